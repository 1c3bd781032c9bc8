"""manifests/crd/ carries the same CRD as crds/ (kustomize cannot load crds/ directly)."""

from __future__ import annotations

from pathlib import Path

from agent_operator.crd.manifest import render

ROOT = Path(__file__).resolve().parents[2]


def test_kustomize_crd_copy_matches_the_model() -> None:
    copy = ROOT / "manifests" / "crd" / "agenttasks.flyteagents.dev.yaml"
    assert copy.read_text(encoding="utf-8") == render(), f"{copy} is stale: run `make crds`"
