"""The cached builder of test-only Go tools (promtool, prometheus, Flux controllers)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from agent_operator.testing import gotools
from agent_operator.testing.gotools import FLUX, PROMETHEUS, GoToolError, build_family, find_all, find_tool


def test_cache_dir_is_keyed_by_version_and_wrapper_module(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENT_OPERATOR_CACHE", str(tmp_path))
    directory = PROMETHEUS.cache_dir()
    assert directory.parent == tmp_path / "prometheus"
    assert directory.name.startswith(f"{PROMETHEUS.version}-")
    assert FLUX.cache_dir().parent == tmp_path / "flux"
    untagged = dataclasses.replace(PROMETHEUS, tags=())
    assert untagged.build_key() != PROMETHEUS.build_key()  # build flags are part of the key


def test_bring_your_own_directory_is_used_as_is(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in PROMETHEUS.packages:
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("PROMETHEUS_BIN_DIR", str(tmp_path))
    assert find_tool(PROMETHEUS, "promtool", build=False) == tmp_path / "promtool"
    assert find_all(PROMETHEUS, build=False) == tmp_path


def test_bring_your_own_directory_missing_a_binary_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLUX_BIN_DIR", str(tmp_path))
    with pytest.raises(GoToolError, match=r"FLUX_BIN_DIR=.* lacks executable source-controller, kustomize-controller"):
        find_all(FLUX, build=False)
    with pytest.raises(GoToolError, match="FLUX_BIN_DIR=.* lacks an executable kustomize-controller"):
        find_tool(FLUX, "kustomize-controller")


def test_uncached_without_build_says_how_to_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AGENT_OPERATOR_CACHE", str(tmp_path))
    monkeypatch.delenv("FLUX_BIN_DIR", raising=False)
    assert gotools.main(["path", "flux"]) == 1
    assert "python -m agent_operator.testing.gotools build flux" in capsys.readouterr().err
    assert gotools.main(["path", "nope"]) == 2
    with pytest.raises(GoToolError, match="prometheus has no binary 'grafana'"):
        find_tool(PROMETHEUS, "grafana")


def test_build_without_go_names_the_bring_your_own_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENT_OPERATOR_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))  # no `go` here
    with pytest.raises(GoToolError, match="PROMETHEUS_BIN_DIR"):
        build_family(PROMETHEUS)
    assert not any(p.is_file() and os.access(p, os.X_OK) for p in tmp_path.rglob("*"))
