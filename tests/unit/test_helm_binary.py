"""How the helm binary is found: bring-your-own through AGENT_OPERATOR_HELM (checked), else the
cache keyed by the pinned release and the wrapper module (so a re-pin builds anew)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_operator.testing import helm


def test_bring_your_own_helm_must_be_an_executable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(helm.HELM_ENV, str(tmp_path))
    with pytest.raises(helm.HelmError, match=helm.HELM_ENV):
        helm.ensure_helm()
    plain = tmp_path / "helm"
    plain.write_text("#!/bin/sh\n")
    monkeypatch.setenv(helm.HELM_ENV, str(plain))
    with pytest.raises(helm.HelmError, match="not an executable"):
        helm.ensure_helm()
    plain.chmod(0o755)
    assert helm.ensure_helm() == plain


def test_cache_key_follows_the_pinned_release_and_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(helm.HELM_ENV, raising=False)
    monkeypatch.setenv("AGENT_OPERATOR_CACHE", str(tmp_path))
    key = helm.build_key()
    assert key.startswith(helm.HELM_VERSION + "-")
    assert helm.cached_path() == tmp_path / "helm" / key / "helm"
    module = (helm.HELMBUILD_DIR / "go.mod").read_text()
    assert f"helm.sh/helm/v4 {helm.HELM_VERSION}" in module, "HELM_VERSION names the version go.mod pins"


def test_missing_go_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(helm.HELM_ENV, raising=False)
    monkeypatch.setenv("AGENT_OPERATOR_CACHE", str(tmp_path))  # nothing cached there
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(helm.HelmError, match="Go toolchain"):
        helm.ensure_helm()
