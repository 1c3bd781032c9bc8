"""The ``shards`` scenario: N replicas of ``agent-operator run --shards auto`` share one task set.

For each API server mode — ``server-side`` (``ShardedListAndWatch`` on: each replica's list
and watch carry its ``shardSelector``) and ``fallback`` (gate off: every replica receives
every event and filters client-side with the same hash) — and N = 1, 2, 4 replicas:

1. start N replicas in a fresh namespace, each behind its own loopback byte-counting TCP
   proxy, and wait until the owner table gives every slot to a live member (ring settled);
2. create ``tasks`` instant AgentTasks and wait until all are Succeeded;
3. per replica: AgentTask watch events received (the replica's own
   ``agent_operator_shard_watch_events_total``), events dropped by the client-side filter,
   bytes received from the API server (TLS bytes through its proxy: watch, list and the
   answers to its writes), CPU seconds and peak RSS; for the group: tasks per second and
   the API server's CPU.

Each mode runs on its own control plane (the feature gate is a server flag).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent_operator.ha.shards import OWNERS_ANNOTATION
from agent_operator.testing import processes
from agent_operator.testing.controlplane import ControlPlane
from agent_operator.testing.operator_proc import OperatorProcess

from .agents import INSTANT_TYPE
from .contenders import AGENT_SPECS
from .harness import ContenderProcess, cpu_seconds, install_crd
from .kube import Kube
from .loadgen import Observer, create_all, create_namespace, task_manifest

MODES = {"server-side": True, "fallback": False}
#: this scenario measures traffic, not failover: on the shared 2-core machine (load average
#: ~25 from other work) the API server answered member-Lease PUTs in more than 10 s during a
#: 1,000-task burst, so the default 15 s lease made replicas stand down mid-run
LEASE_ARGS = ("--shard-lease-duration", "90", "--shard-renew-deadline", "60", "--shard-retry-period", "5")


class CountingProxy:
    """A loopback TCP proxy in front of the API server counting bytes sent to the client."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.to_client = 0
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> "CountingProxy":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool) -> None:
        try:
            while data := await reader.read(65536):
                if count:
                    self.to_client += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer, False), self._pipe(up_reader, writer, True))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


@dataclass
class Replica:
    """One replica: its process, proxy and health port."""

    proc: ContenderProcess
    proxy: CountingProxy
    health_port: int

    async def metric(self, name: str) -> float:
        """A sample of the replica's own /metrics (0 when absent)."""
        def fetch() -> str:
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/metrics", timeout=5) as r:
                return str(r.read().decode())
        try:
            text = await asyncio.to_thread(fetch)
        except OSError:
            return 0.0
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    async def snapshot(self) -> dict[str, float]:
        return {"events": await self.metric("agent_operator_shard_watch_events_total"),
                "filtered": await self.metric("agent_operator_shard_filtered_events_total"),
                "server_side": await self.metric("agent_operator_shard_server_side"),
                "slots": await self.metric("agent_operator_shard_slots"),
                "bytes": float(self.proxy.to_client), "cpu": cpu_seconds(self.proc.pid)}


def proxied_kubeconfig(kubeconfig: Path, port: int, path: Path) -> Path:
    """``kubeconfig`` with its server replaced by the proxy on ``port`` (same TLS name: 127.0.0.1)."""
    config = yaml.safe_load(kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path.write_text(yaml.safe_dump(config))
    return path


async def settled(kube: Kube, namespace: str, ring: str, replicas: list[Replica], timeout: float) -> None:
    """Wait until every slot has an owner, there are as many owners as replicas, all drive."""
    deadline = time.time() + timeout
    owners: list[str] = []
    while time.time() < deadline:
        for r in replicas:
            r.proc.check_alive()
        try:
            lease = await kube.request("GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{ring}")
            owners = json.loads(lease["metadata"]["annotations"][OWNERS_ANNOTATION])
        except Exception:  # noqa: BLE001 - not created yet
            owners = []
        if owners and "" not in owners and len(set(owners)) == len(replicas):
            slots = [await r.metric("agent_operator_shard_slots") for r in replicas]
            if sum(slots) == len(owners):
                return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"ring {namespace}/{ring} not settled in {timeout:.0f}s: owners {owners}")


async def one_run(kube: Kube, cp: ControlPlane, workdir: Path, mode: str, n: int, tasks: int,
                  concurrency: int, log: Any) -> dict[str, Any]:
    """N replicas, one task set: per-replica and group figures."""
    ns, ring = f"shards-{mode}-{n}", f"bench-ring-{n}"
    await create_namespace(kube, ns)
    replicas: list[Replica] = []
    for i in range(n):
        proxy = await CountingProxy(cp.apiserver_port).start()
        kubeconfig = proxied_kubeconfig(cp.kubeconfig, proxy.port, workdir / f"{ns}-r{i}.kubeconfig")
        port = processes.free_port()
        argv = OperatorProcess(kubeconfig, namespaces=[ns], agents=AGENT_SPECS, health_port=port, extra_args=[
            "--shards", "auto", "--shard-ring", ring, "--leader-election-namespace", ns, *LEASE_ARGS,
            "--max-concurrency", str(concurrency), "--per-agent-concurrency", str(concurrency)]).argv()
        proc = ContenderProcess(name=f"{ns}-r{i}", argv=argv, workdir=workdir,
                                env={"KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"})
        replicas.append(Replica(proc.start(), proxy, port))
    observer: Observer | None = None
    try:
        await settled(kube, ns, ring, replicas, 180)
        before = [await r.snapshot() for r in replicas]
        api0 = cpu_seconds(cp.pids["kube-apiserver"])
        observer = await Observer(kube, ns).start()
        names = [f"t{i:05d}" for i in range(tasks)]
        t0 = time.time()
        await create_all(kube, ns, [task_manifest(name, INSTANT_TYPE) for name in names])
        def alive() -> None:
            for r in replicas:
                r.proc.check_alive()
        done = await observer.wait_for(names, "ended", max(300.0, tasks * 0.5), alive)
        t1 = max(observer.ended.values(), default=time.time())
        await asyncio.sleep(2.0)
        after = [await r.snapshot() for r in replicas]
        api_cpu = cpu_seconds(cp.pids["kube-apiserver"]) - api0
    finally:
        if observer is not None:
            await observer.stop()
        for r in replicas:
            r.proc.stop()
            await r.proxy.stop()
    per = []
    for r, b, a in zip(replicas, before, after):
        assert r.proc.sampler is not None
        per.append({"slots": int(a["slots"]), "server_side": bool(a["server_side"]),
                    "watch_events": int(a["events"] - b["events"]),
                    "filtered_events": int(a["filtered"] - b["filtered"]),
                    "bytes_received_mb": round((a["bytes"] - b["bytes"]) / 2**20, 2),
                    "cpu_seconds": round(a["cpu"] - b["cpu"], 2),
                    "peak_rss_mb": round(r.proc.sampler.peak / 2**20, 1)})
    seconds = max(t1 - t0, 1e-6)
    result = {"replicas": n, "tasks": tasks, "all_completed": done, "seconds": round(seconds, 2),
              "tasks_per_second": round(len(observer.ended) / seconds, 1) if observer else 0.0,
              "apiserver_cpu_seconds": round(api_cpu, 2), "per_replica": per,
              "mean_watch_events_per_replica": round(sum(p["watch_events"] for p in per) / n, 1),
              "mean_bytes_received_mb_per_replica": round(sum(p["bytes_received_mb"] for p in per) / n, 2)}
    log(f"  shards {mode:<11} N={n}: {result['tasks_per_second']:>6} tasks/s, per replica "
        f"{result['mean_watch_events_per_replica']} events, {result['mean_bytes_received_mb_per_replica']} MB, "
        f"cpu {[p['cpu_seconds'] for p in per]} s, rss {[p['peak_rss_mb'] for p in per]} MB")
    return result


def run(workdir: Path, tasks: int, replica_counts: list[int], concurrency: int, log: Any) -> dict[str, Any]:
    """Every mode on its own control plane; ``{mode: {N: result}}``."""
    out: dict[str, Any] = {"tasks": tasks, "replicas": replica_counts}
    for mode, gate in MODES.items():
        log(f"shards: {tasks} instant tasks, replicas {replica_counts}, ShardedListAndWatch "
            f"{'on' if gate else 'off'} ({mode})")
        with ControlPlane(log=lambda m: log(f"[control-plane {mode}] {m}"),
                          feature_gates={"ShardedListAndWatch": gate}) as cp:
            install_crd(cp)

            async def all_counts(cp: ControlPlane = cp, mode: str = mode) -> dict[str, Any]:
                async with Kube(cp.kubeconfig, limit=60) as kube:
                    return {str(n): await one_run(kube, cp, workdir, mode, n, tasks, concurrency, log)
                            for n in replica_counts}
            out[mode] = asyncio.run(all_counts())
    return out


def markdown(shards: dict[str, Any]) -> str:
    """The per-replica table of a shards result."""
    lines = ["## Scaling out: uid shards (`--shards auto`)", "",
             f"{shards['tasks']} instant tasks per run; per replica means over the replicas of one run.", "",
             "| mode | N | tasks/s | watch events / replica | filtered / replica | MB received / replica "
             "| CPU s / replica | peak RSS MB / replica | API server CPU s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for mode in MODES:
        for n, r in (shards.get(mode) or {}).items():
            per = r["per_replica"]

            def mean(key: str) -> float:
                return round(float(sum(p[key] for p in per)) / len(per), 2)
            lines.append(f"| {mode} | {n} | {r['tasks_per_second']} | {mean('watch_events')} | "
                         f"{mean('filtered_events')} | {mean('bytes_received_mb')} | {mean('cpu_seconds')} | "
                         f"{mean('peak_rss_mb')} | {r['apiserver_cpu_seconds']} |")
    return "\n".join(lines) + "\n"
