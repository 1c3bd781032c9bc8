"""The Dockerfile passes hadolint and keeps the rules the issue sets: multi-stage, slim base,
non-root numeric user matching the Deployment, no compilers in the final stage, entrypoint
``agent-operator run`` in exec form.  (No Docker engine here: this is the check we can run.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def stages() -> list[list[str]]:
    """Instructions (continuations joined, comments dropped) grouped by FROM."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            out.append([])
        if out:
            out[-1].append(line)
    return out


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    return found


def test_hadolint_finds_nothing() -> None:
    proc = subprocess.run([hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_final_stage_is_slim_non_root_without_compilers() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2, "multi-stage build"
    final = all_stages[-1]
    text = DOCKERFILE.read_text()
    assert re.search(r"ARG PYTHON_IMAGE=docker.io/library/python:[0-9.]+-slim", text)
    assert final[0] == "FROM ${PYTHON_IMAGE}"
    body = "\n".join(final)
    for tool in ("gcc", "g++", "build-essential", "make ", "clang", "apt-get install"):
        assert tool not in body, f"{tool} in the final stage"
    assert "COPY --from=build /opt/venv /opt/venv" in final
    (user,) = [i for i in final if i.startswith("USER ")]
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root user (runAsNonRoot can verify it)"
    deployment = yaml.safe_load((ROOT / "manifests" / "base" / "deployment.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid)


def test_entrypoint_is_agent_operator_run_in_exec_form() -> None:
    final = stages()[-1]
    (entry,) = [i for i in final if i.startswith("ENTRYPOINT ")]
    assert json.loads(entry.removeprefix("ENTRYPOINT ")) == ["agent-operator", "run"]


def test_build_context_is_limited_to_the_package() -> None:
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert "*" in ignore and "!operator/" in ignore and "!pyproject.toml" in ignore
    assert "!requirements/image.lock" in ignore
