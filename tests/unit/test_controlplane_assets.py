"""How the control-plane binaries are located, and the errors a user meets when they cannot be."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agent_operator.testing import assets


def _fake_binary(path: Path) -> None:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_kubebuilder_assets_directory_is_used_when_complete(tmp_path, monkeypatch) -> None:
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl"):
        _fake_binary(tmp_path / name)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    found = assets.find_assets(build=False)
    assert found.source == "KUBEBUILDER_ASSETS"
    assert found.kube_apiserver == tmp_path / "kube-apiserver"
    assert found.kubectl == tmp_path / "kubectl"


def test_incomplete_kubebuilder_assets_names_the_missing_binaries(tmp_path, monkeypatch) -> None:
    _fake_binary(tmp_path / "etcd")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    with pytest.raises(assets.AssetsError) as err:
        assets.find_assets(build=False)
    missing = str(err.value).split("lacks executable ")[1].split(";")[0]
    assert missing == "kube-apiserver, kube-controller-manager"


def test_missing_go_toolchain_names_go_and_the_kubebuilder_assets_alternative(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("AGENT_OPERATOR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(assets.AssetsError) as err:
        assets.find_assets(build=True, log=lambda m: None)
    message = str(err.value)
    assert "Go toolchain" in message and "KUBEBUILDER_ASSETS" in message


def test_cache_key_changes_when_the_wrapper_module_changes(tmp_path, monkeypatch) -> None:
    for name in ("go.mod", "go.sum", "tools.go"):
        (tmp_path / name).write_bytes((assets.GOBUILD_DIR / name).read_bytes())
    monkeypatch.setattr(assets, "GOBUILD_DIR", tmp_path)
    before = assets.build_key()
    (tmp_path / "go.mod").write_text((tmp_path / "go.mod").read_text() + "\n// re-pinned\n")
    after = assets.build_key()
    assert before != after
    assert before.startswith(assets.KUBERNETES_VERSION) and after.startswith(assets.KUBERNETES_VERSION)


def test_cache_root_honours_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AGENT_OPERATOR_CACHE", str(tmp_path))
    assert assets.cache_root() == tmp_path
    monkeypatch.delenv("AGENT_OPERATOR_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert assets.cache_root() == tmp_path / "xdg" / "agent-operator"


def test_ldflags_stamp_the_pinned_version() -> None:
    flags = assets._ldflags()
    assert f"k8s.io/component-base/version.gitVersion={assets.KUBERNETES_VERSION}" in flags
    assert f"k8s.io/component-base/version.gitMinor={assets.KUBERNETES_VERSION.split('.')[1]}" in flags
    assert os.sep not in assets.KUBERNETES_VERSION
