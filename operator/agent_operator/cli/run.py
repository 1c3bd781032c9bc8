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
    p.add_argument("--log-format", choices=("text", "json"), default="text")
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
    p.add_argument("--events", choices=("all", "warnings"), default="all",
                   help="Kubernetes Events to post: 'all' (every phase or reason transition, what "
                   "'kubectl describe' users expect) or 'warnings' (Warnings and the final transition "
                   "only: one Event per healthy task instead of three, about 10%% less operator CPU "
                   "and a third fewer API writes in bursts) (default all)")
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
    """Structured logs through observability.logging when installed; kopf quiet unless -v."""
    from agent_operator.controller import hooks

    mod = hooks.logging_module()
    if mod is not None:
        mod.configure(fmt, level.upper())
    else:  # pragma: no cover - observability is part of the package
        logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:
        logging.getLogger("kopf").setLevel(logging.WARNING)
        logging.getLogger("kubernetes").setLevel(logging.WARNING)


def _start_health(port: int, ready: Any) -> Any:
    from agent_operator.controller import hooks

    mod = hooks.health_module()
    if mod is None or not port:
        return None
    return mod.start_http_server(port, ready)


def run(args: argparse.Namespace) -> int:
    """Load agents, connect, and run the controller until SIGTERM/SIGINT; then exit at once."""
    exit_now(serve(args))
    return 0  # pragma: no cover - exit_now does not return


def serve(args: argparse.Namespace) -> int:
    """The operator's whole life; returns the exit code."""
    from agent_operator.cli import agent_sources
    from agent_operator.controller.api import KubeApi, new_api_client
    from agent_operator.controller.operator import Controller, ControllerOptions
    from agent_operator.core.reconcile import Settings
    from agent_operator.core.runner import CallLimits
    from agent_operator.core.signing import Signer
    from agent_operator.sdk import AgentLoadError, AgentRegistry

    configure_logging(args.log_format, args.log_level, args.verbose)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = os.path.abspath(args.kubeconfig)  # kopf's login reads it
    try:
        signing = _signing_secret(args)
        agent_sources.load(args)
    except (AgentLoadError, ValueError) as e:
        print(f"agent-operator run: {e}", file=sys.stderr)
        return 1
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
    # one API worker (and pooled connection) per agent call in flight: a 16-thread pool behind
    # 64 concurrent tasks was the bench's apply->create bottleneck (p50 15 s -> 11 s at 50/s)
    api_client = new_api_client(args.kubeconfig, pool_size=max(args.max_concurrency, 16))
    api = KubeApi(api_client, workers=max(args.max_concurrency, 16), request_timeout=args.api_timeout)
    holder: dict[str, Controller] = {}

    def ready() -> bool:
        c = holder.get("controller")
        return c is not None and c.ready

    servers = [_start_health(args.health_port, ready)]
    if args.metrics_port and args.metrics_port != args.health_port:
        servers.append(_start_health(args.metrics_port, ready))

    async def main() -> None:
        key = await api.ensure_signing_key(*signing)
        controller = Controller(api, Signer(key), options)
        holder["controller"] = controller
        from agent_operator.controller import hooks

        if not args.leader_elect:
            hooks.set_leader(True)  # the only replica: agent_operator_leader 1, as documented
            await controller.run()
            return

        leader = hooks.leader_module()
        if leader is None:
            raise RuntimeError("--leader-elect needs agent_operator.ha.leader, which is not installed")
        await leader.run_with_leader_election(
            controller.run, api_client=api_client,
            namespace=args.leader_election_namespace or _home_namespace(args), name=args.leader_election_id)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    except Exception as e:  # noqa: BLE001 - report, exit non-zero (e.g. lost leadership)
        log.error("operator stopped: %s: %s", type(e).__name__, e)
        return int(getattr(e, "exit_code", 1) or 1)
    finally:
        agent_sources.close()
        api.close()
        for server in servers:
            if server is not None:
                server.stop()
        api_client.close()
    log.info("operator stopped")
    return 0


def exit_now(code: int) -> None:
    """Exit without joining worker threads: an agent call that hangs must not keep a stopped
    operator alive until its pod is killed (the calls were bounded and abandoned already)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
