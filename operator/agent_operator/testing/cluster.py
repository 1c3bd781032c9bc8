"""``python -m agent_operator.testing.cluster up|down|status|kubeconfig|serve``.

``make cluster-up`` must return while the control plane keeps running, and ``make cluster-down``
must stop exactly what was started.  A small supervisor process owns the three components
(they die with it) and records itself in ``STATE_DIR/state.json``; ``down`` signals the
supervisor, which stops the components and removes its data directory.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import processes
from .controlplane import ControlPlane

DEFAULT_STATE_DIR = Path(os.environ.get("AGENT_OPERATOR_CLUSTER_DIR", ".cluster"))


def _state_file(state_dir: Path) -> Path:
    return state_dir / "state.json"


def read_state(state_dir: Path) -> dict[str, object] | None:
    """The running supervisor's state, or None when nothing runs."""
    try:
        state = json.loads(_state_file(state_dir).read_text())
    except (OSError, ValueError):
        return None
    if not processes.pid_alive(int(state["supervisor"])):
        return None
    return dict(state)


def serve(state_dir: Path, nodes: int = 0) -> int:
    """Run the control plane in the foreground until SIGTERM/SIGINT (the supervisor)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    cp = ControlPlane(state_dir / "data", log=lambda m: print(m, flush=True), nodes=nodes)
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    cp.start()
    try:
        kubeconfig = state_dir / "kubeconfig"
        kubeconfig.write_bytes(cp.kubeconfig.read_bytes())
        kubeconfig.chmod(0o600)
        _state_file(state_dir).write_text(json.dumps({
            "supervisor": os.getpid(),
            "server": cp.server,
            "kubeconfig": str(kubeconfig.resolve()),
            "kubectl": str(cp.assets.kubectl),
            "components": cp.pids,
            "logs": str(cp.logs.resolve()),
            "startup_seconds": round(cp.startup_seconds, 2),
            "node": None if cp.node is None else {
                "name": cp.node.name, "internal_ip": cp.node.node_ip,
                "containerd_socket": str(cp.node.containerd_socket),
                "holder_pid": cp.node.holder.pid if cp.node.holder else None,
                "host_link": cp.node.host_link,
                "cgroup_root": cp.node.cgroup_root,
                "startup_seconds": round(cp.node.startup_seconds, 2),
            },
        }, indent=2))
        while not stopping:
            time.sleep(0.5)
    finally:
        cp.stop()
        _state_file(state_dir).unlink(missing_ok=True)
        import shutil

        shutil.rmtree(state_dir / "data", ignore_errors=True)
    return 0


def up(state_dir: Path, timeout: float, nodes: int = 0) -> int:
    """Start the supervisor in the background and wait until the API server is ready."""
    state = read_state(state_dir)
    if state:
        print(f"already running: {state['server']} (kubeconfig {state['kubeconfig']})")
        return 0
    state_dir.mkdir(parents=True, exist_ok=True)
    _state_file(state_dir).unlink(missing_ok=True)
    log = state_dir / "supervisor.log"
    log.write_text("")
    # The supervisor must outlive `make`: its own session, not tied to our lifetime.
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent_operator.testing.cluster", "--state-dir", str(state_dir),
             "--nodes", str(nodes), "serve"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state(state_dir)
        if state:
            print(f"control plane up at {state['server']} in {state['startup_seconds']}s")
            print(f"kubeconfig: {state['kubeconfig']}")
            return 0
        if proc.poll() is not None:
            print(f"control plane failed to start:\n{processes.tail(log)}", file=sys.stderr)
            return 1
        time.sleep(0.2)
    print(f"control plane not ready after {timeout:.0f}s:\n{processes.tail(log)}", file=sys.stderr)
    proc.terminate()
    return 1


def down(state_dir: Path, timeout: float = 90.0) -> int:
    """Stop the supervisor (and so the components) if it runs.

    A node's stop (every container, then the control plane) takes longer than the API server
    alone on a busy machine; a supervisor killed before it finished leaves its data directory
    behind (and the node's leftovers to the next start's cleanup).
    """
    state = read_state(state_dir)
    if not state:
        print("no control plane running")
        return 0
    pid = int(str(state["supervisor"]))
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while processes.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if processes.pid_alive(pid):
        os.kill(pid, signal.SIGKILL)  # children carry PDEATHSIG and die with it
    print("control plane stopped")
    return 0


def import_image(state_dir: Path, archive: Path | None, ref: str | None) -> int:
    """Import an OCI archive into the running cluster's node (``cluster-up NODES=1``)."""
    from .node import Node, NodeError

    state = read_state(state_dir)
    node = state.get("node") if state else None
    if not isinstance(node, dict):
        print("error: no cluster with a node is running; start one with `make cluster-up NODES=1`", file=sys.stderr)
        return 1
    if archive is None:
        print("error: import-image needs ARCHIVE (an OCI image archive)", file=sys.stderr)
        return 2
    try:
        print(Node.attach(int(node["holder_pid"]), str(node["name"])).import_image(archive, ref))
    except NodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m agent_operator.testing.cluster")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--nodes", type=int, default=0, choices=[0, 1],
                        help="1 starts a local node (containerd, kubelet, kube-proxy) with the control plane")
    parser.add_argument("command", choices=["up", "down", "status", "kubeconfig", "serve", "import-image"])
    parser.add_argument("archive", nargs="?", type=Path, help="import-image: an OCI image archive")
    parser.add_argument("ref", nargs="?", help="import-image: the reference pods use (default: the archive's)")
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir.resolve()
    if args.command == "up":
        return up(state_dir, args.timeout, args.nodes)
    if args.command == "down":
        return down(state_dir)
    if args.command == "serve":
        return serve(state_dir, args.nodes)
    if args.command == "import-image":
        return import_image(state_dir, args.archive, args.ref)
    if args.command == "kubeconfig":
        print(state_dir / "kubeconfig")
        return 0
    state = read_state(state_dir)
    print(json.dumps(state, indent=2) if state else "no control plane running")
    return 0 if state else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
