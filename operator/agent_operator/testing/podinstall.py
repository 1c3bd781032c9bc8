"""Install the operator from ``manifests/`` as users do, onto the local node.

Only two things are patched, through a kustomize overlay on top of the user-facing one: the
image reference (the locally built image imported into the node) and the namespace.

    python -m agent_operator.testing.podinstall overlay DIR --namespace NS --image REF
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

MANIFESTS = Path(__file__).resolve().parents[3] / "manifests"
DEFAULT_OVERLAY = MANIFESTS / "overlays" / "cluster-wide"


def split_ref(ref: str) -> tuple[str, str]:
    """``registry/name:tag`` -> (``registry/name``, ``tag``); a digest-less ref needs a tag."""
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag or not name:
        raise ValueError(f"image: {ref!r} has no tag; use NAME:TAG (pods must not pull :latest)")
    return name, tag


def write_overlay(directory: Path, namespace: str, image: str, base: Path = DEFAULT_OVERLAY) -> Path:
    """Write a kustomization in ``directory`` that applies ``base`` with ``image`` in ``namespace``."""
    new_name, new_tag = split_ref(image)
    directory.mkdir(parents=True, exist_ok=True)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": namespace,
        # kustomize accepts only relative paths to other kustomizations
        "resources": [os.path.relpath(base, directory)],
        "images": [{"name": "flyte-agent-operator", "newName": new_name, "newTag": new_tag}],
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    return directory


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (used by ``make demo-cluster``)."""
    parser = argparse.ArgumentParser(prog="python -m agent_operator.testing.podinstall")
    parser.add_argument("command", choices=["overlay"])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--base", type=Path, default=DEFAULT_OVERLAY)
    args = parser.parse_args(argv)
    try:
        print(write_overlay(args.directory, args.namespace, args.image, args.base))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
