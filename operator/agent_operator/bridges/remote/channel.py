"""gRPC channels to one agent deployment: credentials, keepalive, round-robin, per-loop reuse.

Round-robin is gRPC's own ``round_robin`` load-balancing policy (set through the
channel's service config): the resolver returns every address of the target
(``dns:///svc:8000`` resolves a headless Service to all pod IPs; ``ipv4:a:p,b:p`` lists
them) and calls rotate over the ready sub-channels.  A ``grpc.aio`` channel belongs to
the event loop it was created in, so one is kept per loop; the blocking channel used by
discovery threads is separate.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from agent_operator.bridges.remote.config import Deployment


#: upper bound of gRPC's reconnect backoff (milliseconds)
MAX_RECONNECT_BACKOFF_MS = 5_000


def channel_options(deployment: Deployment) -> list[tuple[str, Any]]:
    """Channel arguments: service config (load balancing), keepalive, TLS name override."""
    ka = deployment.keepalive
    options: list[tuple[str, Any]] = [
        ("grpc.service_config", deployment.service_config),
        # after an outage calls fail fast until the next reconnect attempt; gRPC's default
        # backoff grows to 120 s, which would keep tasks waiting long after the service is back
        ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
    ]
    if ka.time_s > 0:
        options += [
            ("grpc.keepalive_time_ms", int(ka.time_s * 1000)),
            ("grpc.keepalive_timeout_ms", int(ka.timeout_s * 1000)),
            ("grpc.keepalive_permit_without_calls", 1 if ka.permit_without_calls else 0),
            ("grpc.http2.max_pings_without_data", 0),
        ]
    if not deployment.insecure and deployment.tls.server_name:
        options.append(("grpc.ssl_target_name_override", deployment.tls.server_name))
    return options


def _read(path: str | None, what: str, deployment: Deployment) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"agent deployment {deployment.id!r}: cannot read TLS {what} {path}: {e.strerror or e}") from None


def channel_credentials(deployment: Deployment) -> grpc.ChannelCredentials:
    """TLS credentials: the configured CA (or gRPC's bundled roots) and an optional client pair."""
    tls = deployment.tls
    return grpc.ssl_channel_credentials(
        root_certificates=_read(tls.ca_file, "CA file", deployment),
        private_key=_read(tls.key_file, "key file", deployment),
        certificate_chain=_read(tls.cert_file, "certificate file", deployment),
    )


class Channels:
    """Lazily created channels to one deployment (one aio channel per event loop)."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self._aio: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, grpc.aio.Channel] = weakref.WeakKeyDictionary()
        self._sync: grpc.Channel | None = None
        self._lock = threading.Lock()

    def aio(self) -> grpc.aio.Channel:
        """The channel for the running event loop (created on first use in that loop)."""
        loop = asyncio.get_running_loop()
        channel = self._aio.get(loop)
        if channel is None:
            dep = self.deployment
            if dep.insecure:
                channel = grpc.aio.insecure_channel(dep.endpoint, options=channel_options(dep))
            else:
                channel = grpc.aio.secure_channel(dep.endpoint, channel_credentials(dep), options=channel_options(dep))
            self._aio[loop] = channel
        return channel

    def blocking(self) -> grpc.Channel:
        """The thread-safe blocking channel (discovery runs outside any event loop)."""
        with self._lock:
            if self._sync is None:
                dep = self.deployment
                if dep.insecure:
                    self._sync = grpc.insecure_channel(dep.endpoint, options=channel_options(dep))
                else:
                    self._sync = grpc.secure_channel(dep.endpoint, channel_credentials(dep), options=channel_options(dep))
            return self._sync

    async def aclose(self) -> None:
        """Close the running loop's channel (others close with their loops)."""
        channel = self._aio.pop(asyncio.get_running_loop(), None)
        if channel is not None:
            await channel.close()

    def close_blocking(self) -> None:
        """Close the blocking channel."""
        with self._lock:
            if self._sync is not None:
                self._sync.close()
                self._sync = None
