"""Every command shown in docs/plugins.md and docs/flyte2.md, run as written (in order, in a
scratch directory), against loopback fakes: the OpenAI fake for the plugin doc (through
``OPENAI_BASE_URL``), the Flyte 2 SDK's own ``c0`` for the Flyte 2 doc.  A command ending in
``&`` is started in the background and waited for on its port."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flyte2_support import FIXTURES as FLYTE2_FIXTURES  # noqa: E402
from plugin_services import OPENAI_KEY, FakeOpenAI, wait_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def blocks(doc: Path, lang: str) -> list[str]:
    """The fenced ``lang`` blocks of ``doc``."""
    return re.findall(rf"```{lang}\n(.*?)```", doc.read_text(), flags=re.S)


def commands(doc: Path) -> list[str]:
    """The ``$ ...`` lines of the console blocks, in order."""
    return [line[2:] for block in blocks(doc, "console") for line in block.splitlines() if line.startswith("$ ")]


def _port_of(command: str) -> int:
    found = re.search(r"--port (\d+)|--address [\d.]+:(\d+)", command)
    assert found, f"a background command must name its port: {command}"
    return int(found.group(1) or found.group(2))


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def run_doc(doc: Path, cwd: Path, env: dict[str, str]) -> dict[str, str]:
    """Run the doc's commands; returns command -> stdout of the foreground ones."""
    env = {**env, "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"}
    background: list[subprocess.Popen[bytes]] = []
    outputs: dict[str, str] = {}
    try:
        for command in commands(doc):
            if command.endswith("&"):
                port = _port_of(command)
                assert not _listening(port), f"port {port} of `{command}` is taken"
                log = open(cwd / f"bg-{port}.log", "wb")  # noqa: SIM115 - closed with the process
                background.append(subprocess.Popen(["bash", "-c", f"exec {command[:-1]}"], cwd=cwd, env=env,
                                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
                wait_for(f"`{command}` listens on {port}", lambda p=port: _listening(p), timeout=60)
                continue
            done = subprocess.run(["bash", "-ec", command], cwd=cwd, env=env, capture_output=True, text=True,
                                  timeout=300)
            assert done.returncode == 0, f"`{command}` exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            outputs[command] = done.stdout
    finally:
        for proc in background:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    return outputs


def test_plugins_doc_commands_run_an_unchanged_plugin(tmp_path: Path) -> None:
    (tmp_path / "my_tasks").mkdir()
    (tmp_path / "my_tasks" / "__init__.py").write_text("")
    (tmp_path / "my_tasks" / "plugin_tasks.py").write_text(blocks(ROOT / "docs" / "plugins.md", "python")[0])
    with FakeOpenAI(OPENAI_KEY, finish_after_polls=1) as svc:
        env = {**os.environ, "OPENAI_BASE_URL": svc.base + "/v1", "OPENAI_API_KEY": OPENAI_KEY}
        outputs = run_doc(ROOT / "docs" / "plugins.md", tmp_path, env)
    report = json.loads(next(out for cmd, out in outputs.items() if cmd.startswith("agent-operator run-local")))
    assert report["batch"]["phase"] == "Succeeded"
    assert report["batch"]["outputs"]["result"]["error_file_id"] is None


@pytest.mark.parametrize("doc", ["flyte2.md"])
def test_flyte2_doc_commands_run(doc: str, tmp_path: Path) -> None:
    shutil.copy(FLYTE2_FIXTURES / "loopback_connector.py", tmp_path)
    env = {**os.environ, "VAULT_TOKEN": "tok-doc-0123456789",
           "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    run_doc(ROOT / "docs" / doc, tmp_path, env)
    jobs = sorted((tmp_path / "jobs").glob("job-*.json"))
    records = [json.loads(j.read_text()) for j in jobs]
    # one job through c0 (remote), one in process; both saw the token without its newline
    assert len(records) == 2 and all(r["api_key"] == "tok-doc-0123456789" for r in records)
