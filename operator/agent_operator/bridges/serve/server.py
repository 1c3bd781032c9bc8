"""A grpc.aio server hosting the agent services (plaintext or TLS) on one port:

* Flyte 1: flyteidl ``AsyncAgentService``, ``SyncAgentService``, ``AgentMetadataService``;
* Flyte 2 (when flyteidl2 is installed: extra ``[flyte2]``): ``flyteidl2.connector``
  ``AsyncConnectorService`` and ``ConnectorMetadataService`` (async agents only);
* the standard ``grpc.health.v1.Health`` service, as flytekit's connector server registers
  it: SERVING for the server ("") and for every service above while it runs, NOT_SERVING
  once it is stopping.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from flyteidl.service import agent_pb2_grpc

from agent_operator.bridges.serve.servicer import AgentMetadataServicer, AsyncAgentServicer, SyncAgentServicer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerTLS:
    """Server certificate and key; a client CA turns on mutual TLS (client certs required)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None


def server_credentials(tls: ServerTLS) -> grpc.ServerCredentials:
    """PEM files -> gRPC server credentials."""
    pair = (Path(tls.key_file).read_bytes(), Path(tls.cert_file).read_bytes())
    client_ca = Path(tls.client_ca_file).read_bytes() if tls.client_ca_file else None
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)


#: Flyte 1 services, by their full names (what the health service reports on)
FLYTE1_SERVICES = ("flyteidl.service.AsyncAgentService", "flyteidl.service.SyncAgentService",
                   "flyteidl.service.AgentMetadataService")


def flyte2_servable() -> bool:
    """Whether flyteidl2 can be imported, so the Flyte 2 connector services can be served."""
    from agent_operator.serialization.flyte2 import flyteidl2_available

    return flyteidl2_available()


class AgentServer:
    """The started server, its bound port, the services it serves and their health."""

    def __init__(self, server: grpc.aio.Server, port: int, services: list[str], health: Any) -> None:
        self.server = server
        self.port = port
        self.services = services
        self.health = health

    async def stop(self, grace: float | None) -> None:
        """Report NOT_SERVING, then stop, letting in-flight calls finish for ``grace`` seconds."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)

    async def wait_for_termination(self) -> None:
        """Until the server stops."""
        await self.server.wait_for_termination()


async def start_agent_server(address: str, tls: ServerTLS | None = None, *, flyte2: bool | None = None) -> AgentServer:
    """Start serving the registry on ``address`` (``host:port``, port 0 = pick one).

    ``flyte2``: serve the Flyte 2 connector services too (None: when flyteidl2 is installed;
    True without it raises ImportError naming the extra).  The caller owns the returned
    server (``await server.stop(grace)``).
    """
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.aio.server()
    agent_pb2_grpc.add_AsyncAgentServiceServicer_to_server(AsyncAgentServicer(), server)
    agent_pb2_grpc.add_SyncAgentServiceServicer_to_server(SyncAgentServicer(), server)
    agent_pb2_grpc.add_AgentMetadataServiceServicer_to_server(AgentMetadataServicer(), server)
    services = list(FLYTE1_SERVICES)
    if flyte2 is None:
        flyte2 = flyte2_servable()
    if flyte2:
        if not flyte2_servable():
            raise ImportError("serving Flyte 2 connectors needs flyteidl2: pip install 'flyte-agent-operator[flyte2]'")
        from agent_operator.bridges.serve import flyte2 as flyte2_services

        services += flyte2_services.add_to_server(server)
    checker = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    for name in ("", *services):
        await checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, server_credentials(tls))
    if port == 0:
        raise OSError(f"cannot bind the agent service to {address}")
    await server.start()
    log.info("agent service listening on %s (port %d, %s): %s", address, port, "TLS" if tls else "plaintext",
             ", ".join(services))
    return AgentServer(server, port, services, checker)

