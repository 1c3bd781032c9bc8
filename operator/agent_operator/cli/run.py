"""`agent-operator run`: the operator (watch AgentTasks, drive their agents).

Works with any kubeconfig (``--kubeconfig``, ``$KUBECONFIG``, ``~/.kube/config``) or
in-cluster credentials; agents load exactly as for every other command
(:mod:`agent_operator.cli.agent_sources`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

from agent_operator.crd.durations import parse_duration

log = logging.getLogger("agent_operator.run")
DEFAULT_SIGNING_SECRET_NAME = "agent-operator-signing-key"


def _seconds(text: str) -> float:
    """A duration flag: plain seconds (``10``) or a Go duration (``10s``, ``1m``)."""
    try:
        return float(text)
    except ValueError:
        try:
            return parse_duration(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``run`` sub-command."""
    from agent_operator.cli import agent_sources

    p = sub.add_parser("run", help="run the operator: watch AgentTasks and drive their agents")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", default=[], metavar="NS",
                       help="watch this namespace (repeatable); default: all namespaces")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch all namespaces (the default)")
    agent_sources.add_arguments(p)
    p.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig file (default: in-cluster, $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="text, or json: one object per line with the task's namespace, name and uid (default text)")
    p.add_argument("--log-level", default="INFO", help="root log level (default INFO)")
    p.add_argument("--verbose", "-v", action="store_true", help="also show kopf's own logs")
    p.add_argument("--health-port", type=int, default=8080, metavar="N",
                   help="serve /healthz /readyz /metrics on this port (0 = off; default 8080)")
    p.add_argument("--metrics-port", type=int, default=0, metavar="N",
                   help="also serve /metrics (and probes) on this port (0 = only the health port)")
    p.add_argument("--leader-elect", action="store_true", help="run only while holding a coordination.k8s.io Lease")
    p.add_argument("--leader-election-namespace", metavar="NS", help="namespace of the Lease (default: $POD_NAMESPACE, "
                   "the first --namespace, or 'default')")
    p.add_argument("--leader-election-id", default="agent-operator", metavar="NAME", help="name of the Lease")
    p.add_argument("--shards", choices=("off", "auto"), default="off",
                   help="'auto': active-active replicas share AgentTasks by uid hash (member Leases "
                   "in the leader-election namespace, server-side sharded list/watch when the API "
                   "server has ShardedListAndWatch, a client-side filter otherwise); see docs/scaling.md "
                   "(default off)")
    p.add_argument("--shard-ring", default="agent-operator-shards", metavar="NAME",
                   help="name of the shard ring (its owner-table Lease and the member Leases' label)")
    p.add_argument("--shard-lease-duration", type=_seconds, default=15.0, metavar="S",
                   help="member Lease duration: a crashed replica's slots move after this long (default 15s)")
    p.add_argument("--shard-renew-deadline", type=_seconds, default=10.0, metavar="S",
                   help="a replica that could not renew its member Lease for this long stops driving "
                   "(must be < the lease duration; default 10s)")
    p.add_argument("--shard-retry-period", type=_seconds, default=2.0, metavar="S",
                   help="member Lease renewal and ring round period (default 2s)")
    p.add_argument("--default-poll-interval", type=_seconds, default=10.0, metavar="S",
                   help="poll interval when neither the AgentTask nor the agent sets one (default 10s)")
    p.add_argument("--min-poll-interval", type=_seconds, default=1.0, metavar="S", help="poll interval floor (default 1s)")
    p.add_argument("--max-concurrency", type=int, default=64, metavar="N",
                   help="agent calls in flight at once (default 64)")
    p.add_argument("--per-agent-concurrency", type=int, default=32, metavar="N",
                   help="agent calls in flight per task type (one agent per type) (default 32)")
    p.add_argument("--call-timeout", type=_seconds, default=60.0, metavar="S",
                   help="bound on one create/get/delete call (default 60s)")
    p.add_argument("--do-timeout", type=_seconds, default=300.0, metavar="S",
                   help="bound on one sync do call (default 300s)")
    p.add_argument("--sync-progress-after", type=_seconds, default=2.0, metavar="S",
                   help="a sync do still running after this long shows phase Running (default 2s)")
    p.add_argument("--transient-budget", type=int, default=5, metavar="N",
                   help="transient errors in a row before a task is marked Stalled (default 5)")
    p.add_argument("--watch-inactivity-timeout", type=_seconds, default=70.0, metavar="S",
                   help="reopen a watch stream silent this long - no event, no bookmark (default 70s; "
                   "the API server bookmarks idle watches about every 60s)")
    p.add_argument("--api-timeout", type=_seconds, default=30.0, metavar="S",
                   help="bound on one Kubernetes API request (default 30s)")
    p.add_argument("--events", choices=("warnings", "all"), default="warnings",
                   help="Kubernetes Events to post: 'warnings' (Warnings and the final transition: one "
                   "Event per healthy task; the status conditions tell every transition) or 'all' (every "
                   "phase or reason transition, three Events per healthy task) (default warnings)")
    p.add_argument("--signing-secret", metavar="NS/NAME",
                   help=f"Secret holding the resourceMeta signing key, created when missing (default "
                   f"<$POD_NAMESPACE or first --namespace or 'default'>/{DEFAULT_SIGNING_SECRET_NAME})")
    p.set_defaults(func=run)


def _home_namespace(args: argparse.Namespace) -> str:
    return os.environ.get("POD_NAMESPACE") or (args.namespace[0] if args.namespace else "default")


def _signing_secret(args: argparse.Namespace) -> tuple[str, str]:
    if not args.signing_secret:
        return _home_namespace(args), DEFAULT_SIGNING_SECRET_NAME
    ns, sep, name = args.signing_secret.partition("/")
    if not sep or not ns or not name:
        raise ValueError(f"--signing-secret {args.signing_secret!r}: expected NAMESPACE/NAME")
    return ns, name


def configure_logging(fmt: str, level: str, verbose: bool) -> None:
    """Structured logs through observability.logging; kopf quiet unless -v."""
    from agent_operator.observability.logging import configure

    configure(fmt, level.upper())
    if not verbose:
        logging.getLogger("kopf").setLevel(logging.WARNING)
        logging.getLogger("kubernetes").setLevel(logging.WARNING)


def _start_health(port: int, ready: Any) -> Any:
    from agent_operator.ha.leader import standby_ready
    from agent_operator.observability.health import start_http_server

    if not port:
        return None
    return start_http_server(port, ready, standby=standby_ready)


def kubeconfig_problem(path: str) -> str | None:
    """Why ``path`` cannot be a kubeconfig (None: it can be read as one)."""
    import yaml

    try:
        with open(path, "rb") as f:
            data = f.read(16 * 1024 * 1024)
    except OSError as e:
        return e.strerror or str(e)
    try:
        config = yaml.safe_load(data)
    except yaml.YAMLError:
        config = None
    if not isinstance(config, dict) or not {"clusters", "contexts", "users"} & set(config):
        return "not a kubeconfig (a YAML file with clusters, contexts and users)"
    return None


#: young-generation threshold of the cyclic garbage collector (CPython's default: 700)
GC_THRESHOLD = (10_000, 20, 50)


def tune_gc() -> None:
    """Freeze what start-up allocated (modules, agents, the CRD schema: never garbage) out of
    the collector's sight, and collect the young generation every 10,000 allocations instead
    of 700. Every watch event allocates a few hundred short-lived objects that reference
    counting frees anyway; at the default threshold the collector ran several times per
    event. A/B, `python -m bench.run --scenarios steady --contenders operator`, two runs
    each, interleaved: apply→create p99 0.231/0.225 s → 0.164/0.103 s, CPU 9.6/9.3 →
    9.2/8.4 ms per task (bench/results/2026-11-30-gc.md)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def run(args: argparse.Namespace) -> int:
    """Load agents, connect, and run the controller until SIGTERM/SIGINT; then exit at once."""
    exit_now(run_operator(args))
    return 0  # pragma: no cover - exit_now does not return


def run_operator(args: argparse.Namespace) -> int:
    """The operator's whole life; returns the exit code."""
    from agent_operator.cli import agent_sources
    from agent_operator.controller import config
    from agent_operator.controller.api import KubeApi
    from agent_operator.controller.client import KubeClient
    from agent_operator.controller.operator import Controller, ControllerOptions
    from agent_operator.core.reconcile import Settings
    from agent_operator.core.runner import CallLimits
    from agent_operator.core.signing import Signer
    from agent_operator.sdk import AgentLoadError, AgentRegistry

    problem = kubeconfig_problem(args.kubeconfig) if args.kubeconfig else None
    if problem:
        print(f"agent-operator run: --kubeconfig {args.kubeconfig}: {problem}", file=sys.stderr)
        return 2
    configure_logging(args.log_format, args.log_level, args.verbose)
    try:
        signing = _signing_secret(args)
        cluster = config.load(args.kubeconfig)
        agent_sources.load(args)
    except config.ConfigError as e:  # credentials that cannot be used: one line, usage error
        print(f"agent-operator run: cannot load Kubernetes credentials: {e}".splitlines()[0], file=sys.stderr)
        return 2
    except (AgentLoadError, ValueError) as e:  # a flag naming an agent that cannot be loaded: usage
        print(f"agent-operator run: {e}", file=sys.stderr)
        return 2
    log.info("agents: %s", ", ".join(f"{a.task_category}={a.name}" for a in AgentRegistry.agents()) or "none")
    options = ControllerOptions(
        namespaces=tuple(args.namespace),
        settings=Settings(default_poll_interval=args.default_poll_interval, min_poll_interval=args.min_poll_interval,
                          transient_budget=args.transient_budget),
        limits=CallLimits(call_timeout=args.call_timeout, do_timeout=args.do_timeout,
                          do_progress_after=args.sync_progress_after),
        max_concurrency=args.max_concurrency,
        per_agent_concurrency=args.per_agent_concurrency,
        agent_threads=max(args.max_concurrency, 8),
        watch_inactivity_timeout=args.watch_inactivity_timeout,
        api_timeout=args.api_timeout,
        events=args.events,
    )
    tune_gc()
    log.info("API server %s (%s)", cluster.server, cluster.source)
    # one pooled connection per agent call in flight (a smaller pool was the bench's apply->create bottleneck)
    client = KubeClient(cluster, pool_size=max(args.max_concurrency, 16), timeout=args.api_timeout)
    api = KubeApi(client)
    holder: dict[str, Controller] = {}

    def ready() -> bool:
        c = holder.get("controller")
        return c is not None and c.ready or bool(holder.get("joined"))

    servers = [_start_health(args.health_port, ready)]
    if args.metrics_port and args.metrics_port != args.health_port:
        servers.append(_start_health(args.metrics_port, ready))

    async def main() -> None:
        async with client:
            await operate()

    async def operate() -> None:
        key = await api.ensure_signing_key(*signing)
        if args.shards == "auto":
            await _run_sharded(args, api, Signer(key), options, holder)
            return
        controller = Controller(api, Signer(key), options)
        holder["controller"] = controller
        from agent_operator.controller import hooks

        if not args.leader_elect:
            hooks.set_leader(True)  # the only replica: agent_operator_leader 1, as documented
            await controller.run()
            return
        from agent_operator.ha import leader

        await leader.run_with_leader_election(
            controller.run, client=client,
            namespace=args.leader_election_namespace or _home_namespace(args), name=args.leader_election_id)

    # In a container this process is PID 1, and the kernel delivers to PID 1 only the signals
    # it handles: until kopf installs its own handlers (after winning the election) SIGTERM
    # must already stop a standby like Ctrl-C does, or the pod is killed only at its grace
    # period (found by the real node: 40 s takeovers, docs/node.md)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    except Exception as e:  # noqa: BLE001 - report, exit non-zero (e.g. lost leadership)
        log.error("operator stopped: %s: %s", type(e).__name__, e)
        return int(getattr(e, "exit_code", 1) or 1)
    finally:
        agent_sources.close()
        for server in servers:
            if server is not None:
                server.stop()
    log.info("operator stopped")
    return 0


async def _run_sharded(args: argparse.Namespace, api: Any, signer: Any, options: Any, holder: dict[str, Any]) -> None:
    """``--shards auto``: one member of the uid ring; a fresh controller per set of owned slots."""
    import dataclasses

    from agent_operator.controller.client import KubeClient
    from agent_operator.controller.operator import Controller
    from agent_operator.crd import names
    from agent_operator.ha import leader, membership, ring, shards

    if args.leader_elect:
        raise ValueError("--shards auto and --leader-elect exclude each other (sharded replicas are all active)")
    namespace = args.leader_election_namespace or _home_namespace(args)
    prefix = f"/apis/{names.GROUP}/{names.VERSION}"
    tasks_path = (f"{prefix}/namespaces/{args.namespace[0]}/{names.PLURAL}" if args.namespace
                  else f"{prefix}/{names.PLURAL}")

    # Lease I/O on its own two workers, never queued behind a burst of task writes (a
    # 1,000-task burst kept a renewal waiting past the renew deadline in the bench), and
    # bounded well inside the renew deadline
    try:
        timing = leader.Timing(args.shard_lease_duration, args.shard_renew_deadline, args.shard_retry_period)
    except ValueError as e:
        raise ValueError(f"--shard-lease-duration/--shard-renew-deadline/--shard-retry-period: {e}") from None
    lease_client = KubeClient(api.client.config, pool_size=2, timeout=timing.retry_seconds * 2)

    async def request(method: str, path: str, body: Any) -> Any:
        return await lease_client.request(method, path, body)

    store = membership.KubeShardStore(request, namespace, args.shard_ring, tasks_path)

    async def work(view: shards.ShardView, stop: asyncio.Event) -> None:
        controller = Controller(api, signer, dataclasses.replace(
            options, shard_selector=view.selector, shard_covers=view.covers, shard_gate=view.may_drive,
            drain_on_stop=True))
        holder["controller"] = controller
        await controller.run(stop_flag=stop)

    holder["joined"] = True
    try:
        await shards.run_sharded(work, store, ring=args.shard_ring, name=membership.member_name(args.shard_ring),
                                 identity=leader.default_identity(), slots=ring.DEFAULT_SLOTS, timing=timing)
    finally:
        await lease_client.close()


def exit_now(code: int) -> None:
    """Exit without joining worker threads: an agent call that hangs must not keep a stopped
    operator alive until its pod is killed (the calls were bounded and abandoned already)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
