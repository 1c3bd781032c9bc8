"""`agent-operator serve connector`: this process's agents as a Flyte connector service (gRPC).

Loads agents exactly as ``run`` does (:mod:`agent_operator.cli.agent_sources`) and serves
them on one port:

* to Flyte 1 as flyteidl ``AsyncAgentService``, ``SyncAgentService`` and
  ``AgentMetadataService``, so a FlytePropeller whose ``agent-service`` plugin points at this
  address runs them the way it runs a ``pyflyte serve connector`` deployment;
* to Flyte 2 as ``flyteidl2.connector`` ``AsyncConnectorService`` and
  ``ConnectorMetadataService`` (async agents only: Flyte 2 has no sync service), when
  flyteidl2 is installed (``--flyte2-service``);
* the standard ``grpc.health.v1.Health`` service.

``serve``, ``serve connector`` and ``serve agent`` are the same command (flytekit 1.16 says
``pyflyte serve connector``; ``agent`` is kept for older scripts).  No Kubernetes access is
needed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from agent_operator.cli import agent_sources
from agent_operator.sdk import AgentLoadError, AgentRegistry, SyncAgentBase

if TYPE_CHECKING:
    from agent_operator.bridges.serve import ServerTLS

log = logging.getLogger("agent_operator.serve")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``serve`` sub-command."""
    p = sub.add_parser(
        "serve",
        help="serve the loaded agents as a Flyte connector service (gRPC; Flyte 1 and Flyte 2)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("what", nargs="?", choices=("connector", "agent"), default="connector",
                   help="what to serve: connector (the default; 'agent' is the same, flytekit's older name)")
    p.add_argument("--flyte2-service", choices=("auto", "on", "off"), default="auto",
                   help="also serve the Flyte 2 connector services on the same port (auto: when flyteidl2 is "
                   "installed)")
    p.add_argument("--address", default="0.0.0.0:8000", metavar="HOST:PORT",
                   help="listen address (port 0 picks a free port; default 0.0.0.0:8000)")
    p.add_argument("--tls-cert-file", metavar="PEM", help="server certificate (TLS; plaintext without it)")
    p.add_argument("--tls-key-file", metavar="PEM", help="server private key")
    p.add_argument("--tls-client-ca-file", metavar="PEM", help="require client certificates signed by this CA (mTLS)")
    p.add_argument("--port-file", type=Path, metavar="FILE", help="write the bound port here once serving")
    p.add_argument("--grace", type=float, default=10.0, metavar="SECONDS",
                   help="on SIGTERM, let in-flight calls finish for this long (default 10)")
    p.add_argument("--health-port", type=int, default=0, metavar="N",
                   help="serve /healthz /readyz /metrics on this port (0 = off, the default)")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="text, or json: one object per line (default text)")
    agent_sources.add_arguments(p)
    p.set_defaults(func=run)


def _configure_logging(fmt: str) -> None:
    try:
        from agent_operator.observability.logging import configure
    except ImportError:  # observability is optional for this command
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return
    configure(fmt)


def _tls(args: argparse.Namespace) -> "ServerTLS | None":
    from agent_operator.bridges.serve import ServerTLS

    if not args.tls_cert_file and not args.tls_key_file:
        if args.tls_client_ca_file:
            raise ValueError("--tls-client-ca-file needs --tls-cert-file and --tls-key-file")
        return None
    if not (args.tls_cert_file and args.tls_key_file):
        raise ValueError("--tls-cert-file and --tls-key-file must be given together")
    return ServerTLS(args.tls_cert_file, args.tls_key_file, args.tls_client_ca_file)


async def serve(args: argparse.Namespace) -> None:
    """Start the gRPC server, then wait for SIGTERM/SIGINT and stop with ``--grace``."""
    from agent_operator.bridges.serve import start_agent_server

    flyte2 = {"auto": None, "on": True, "off": False}[args.flyte2_service]
    server = await start_agent_server(args.address, _tls(args), flyte2=flyte2)
    port = server.port
    ready = asyncio.Event()
    health = None
    if args.health_port:
        from agent_operator.observability.health import start_http_server

        health = start_http_server(args.health_port, ready.is_set)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    types = ", ".join(sorted(f"{a.task_category}" for a in AgentRegistry.agents())) or "none"
    if args.port_file:
        args.port_file.write_text(f"{port}\n")
    ready.set()
    flyte2_types = ", ".join(sorted(f"{a.task_category}" for a in AgentRegistry.agents()
                                    if not isinstance(a, SyncAgentBase))) or "none"
    served = f"; Flyte 2 connector task types: {flyte2_types}" if len(server.services) > 3 else ""
    print(f"agent-operator serve: listening on port {port} ({'TLS' if args.tls_cert_file else 'plaintext'}); "
          f"task types: {types}{served}", flush=True)
    try:
        await stop.wait()
    finally:
        log.info("stopping agent service (grace %.1fs)", args.grace)
        await server.stop(args.grace)
        if health is not None:
            health.stop()


def run(args: argparse.Namespace) -> int:
    """Load agents, serve until signalled; exit 2 (usage) when an agent flag names an agent that
    cannot be loaded, 1 when serving fails (address in use, TLS files that do not load)."""
    _configure_logging(args.log_format)
    try:
        agent_sources.load(args)
    except (AgentLoadError, ValueError) as e:
        print(f"agent-operator serve: {e}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(args))
    except (OSError, ValueError, ImportError) as e:
        print(f"agent-operator serve: {e}", file=sys.stderr)
        return 1
    finally:
        agent_sources.close()
    return 0

