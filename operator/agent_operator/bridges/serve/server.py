"""A grpc.aio server hosting the three agent services (plaintext or TLS)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

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


async def start_agent_server(address: str, tls: ServerTLS | None = None) -> tuple[grpc.aio.Server, int]:
    """Start serving the registry on ``address`` (``host:port``, port 0 = pick one).

    Returns the started server and the bound port.  The caller owns the server
    (``await server.stop(grace)``).
    """
    server = grpc.aio.server()
    agent_pb2_grpc.add_AsyncAgentServiceServicer_to_server(AsyncAgentServicer(), server)
    agent_pb2_grpc.add_SyncAgentServiceServicer_to_server(SyncAgentServicer(), server)
    agent_pb2_grpc.add_AgentMetadataServiceServicer_to_server(AgentMetadataServicer(), server)
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, server_credentials(tls))
    if port == 0:
        raise OSError(f"cannot bind the agent service to {address}")
    await server.start()
    log.info("agent service listening on %s (port %d, %s)", address, port, "TLS" if tls else "plaintext")
    return server, port
