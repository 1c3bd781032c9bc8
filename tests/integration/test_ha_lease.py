"""Leader election on a real coordination.k8s.io/v1 Lease: takeover after SIGKILL, release on shutdown."""

from __future__ import annotations

import asyncio
import json
import select
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

from agent_operator.controller import config
from agent_operator.controller.client import KubeClient
from agent_operator.ha.leader import run_with_leader_election

pytestmark = pytest.mark.cluster

TIMING: dict[str, float] = dict(lease_seconds=4.0, renew_seconds=3.0, retry_seconds=0.5)

CANDIDATE = textwrap.dedent("""
    import asyncio, sys, time
    from agent_operator.controller import config
    from agent_operator.controller.client import KubeClient
    from agent_operator.ha.leader import run_with_leader_election

    kubeconfig, namespace, identity, lease, renew, retry = sys.argv[1:7]

    async def work():
        print("leading", flush=True)
        await asyncio.sleep(3600)

    client = KubeClient(config.load(kubeconfig))
    asyncio.run(run_with_leader_election(work, client=client, namespace=namespace, name="agent-operator",
        identity=identity, lease_seconds=float(lease), renew_seconds=float(renew), retry_seconds=float(retry)))
""")


def spawn(kubeconfig: str, namespace: str, identity: str) -> subprocess.Popen[str]:
    args = [str(TIMING[k]) for k in ("lease_seconds", "renew_seconds", "retry_seconds")]
    return subprocess.Popen([sys.executable, "-c", CANDIDATE, kubeconfig, namespace, identity, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lease_spec(kubectl: Any, namespace: str) -> dict[str, Any]:
    out = kubectl("-n", namespace, "get", "lease", "agent-operator", "-o", "json").stdout
    spec: dict[str, Any] = json.loads(out)["spec"]
    return spec


def wait_leading(proc: subprocess.Popen[str], timeout: float = 30) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready and proc.stdout.readline().strip() == "leading":
            return
        if proc.poll() is not None:
            raise AssertionError(f"candidate exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
    raise AssertionError("candidate never became leader")


def test_standby_takes_over_after_leader_is_killed(kubeconfig: str, namespace: str, kubectl: Any) -> None:
    leader = spawn(kubeconfig, namespace, "replica-a")
    try:
        wait_leading(leader)
        assert lease_spec(kubectl, namespace)["holderIdentity"] == "replica-a"
        started: dict[str, float] = {}

        async def standby_work() -> None:
            started["b"] = time.monotonic()

        async def scenario() -> None:
            async with KubeClient(config.load(kubeconfig)) as client:
                await standby_scenario(client)

        async def standby_scenario(client: KubeClient) -> None:
            standby = asyncio.ensure_future(run_with_leader_election(
                standby_work, client=client, namespace=namespace, name="agent-operator",
                identity="replica-b", hard_exit=False, **TIMING))
            await asyncio.sleep(2 * TIMING["lease_seconds"])  # a live leader keeps the standby waiting
            assert "b" not in started and leader.poll() is None
            started["kill"] = time.monotonic()
            leader.send_signal(signal.SIGKILL)
            await asyncio.wait_for(standby, 30)

        asyncio.run(scenario())
        takeover = started["b"] - started["kill"]
        print(f"takeover after SIGKILL: {takeover:.2f}s (lease {TIMING['lease_seconds']}s)")
        spec = lease_spec(kubectl, namespace)
        # replica-b released the lease when its work returned; one transition a -> b happened
        assert spec["leaseTransitions"] == 1
        assert not spec.get("holderIdentity")
    finally:
        leader.kill()
        leader.wait()


def test_graceful_shutdown_releases_lease_for_immediate_takeover(kubeconfig: str, namespace: str, kubectl: Any) -> None:
    leader = spawn(kubeconfig, namespace, "replica-a")
    standby: subprocess.Popen[str] | None = None
    try:
        wait_leading(leader)
        standby = spawn(kubeconfig, namespace, "replica-b")
        time.sleep(1)  # the standby has polled and seen the lease held
        assert standby.poll() is None
        t0 = time.monotonic()
        leader.send_signal(signal.SIGINT)  # asyncio.run cancels main; the lease is released
        assert leader.wait(timeout=10) != 0  # KeyboardInterrupt
        wait_leading(standby, timeout=10)
        print(f"takeover after graceful release: {time.monotonic() - t0:.2f}s")
        spec = lease_spec(kubectl, namespace)
        assert spec["holderIdentity"] == "replica-b" and spec["leaseTransitions"] == 1
    finally:
        for proc in (leader, standby):
            if proc is None:
                continue
            proc.kill()
            proc.wait()
