"""The operator's HTTP endpoint: ``/healthz`` (liveness), ``/readyz`` (readiness), ``/metrics``.

It runs in a daemon thread with the standard library's threading HTTP server, not on the
operator's event loop: a kubelet probe must still get an answer while the loop is busy, and a
*blocked* loop is detected by the ``live`` callback (e.g. "the loop ticked within N seconds")
rather than by the probe timing out at random.

Readiness is what the caller says (``ready()``), or true for a leader-election standby that
reaches the API server: a rolling update with ``maxUnavailable: 0`` waits for the new pod
(a standby) to be ready before it stops the old leader.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from . import metrics

log = logging.getLogger("agent_operator.health")

Check = Callable[[], bool]


def _always() -> bool:
    return True


@dataclass
class HealthServer:
    """A running health/metrics server; ``port`` is the bound port (useful with port 0)."""

    server: ThreadingHTTPServer
    thread: threading.Thread
    host: str
    port: int
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8080``."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _probe(check: Check) -> tuple[int, bytes]:
    try:
        ok = bool(check())
    except Exception as exc:  # a failing check is an unhealthy answer, never a 500 traceback
        log.warning("health check %s raised: %s", getattr(check, "__name__", check), exc)
        ok = False
    return (200, b"ok\n") if ok else (503, b"not ok\n")


def _never() -> bool:
    return False


def _handler(ready: Check, live: Check, standby: Check) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "agent-operator"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path in ("/healthz", "/livez"):
                status, body = _probe(live)
                ctype = "text/plain; charset=utf-8"
            elif path == "/readyz":
                status, body = _probe(lambda: standby() or ready())
                ctype = "text/plain; charset=utf-8"
            elif path == "/metrics":
                body, ctype = metrics.render()
                status = 200
            else:
                status, body, ctype = 404, b"not found: try /healthz, /readyz or /metrics\n", "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            # probes hit every few seconds: keep them out of the operator's log
            log.debug("%s " + format, self.address_string(), *args)

    return Handler


def start_http_server(port: int, ready: Check, *, live: Check | None = None,
                      standby: Check | None = None, host: str = "0.0.0.0") -> HealthServer:
    """Serve ``/healthz``, ``/readyz`` and ``/metrics`` on ``host:port`` in a daemon thread.

    ``port=0`` binds a free port (tests); the CLI treats ``--health-port 0`` as "off" and does
    not call this.  ``ready`` decides ``/readyz``; ``live`` (default: always true) decides
    ``/healthz``; ``standby`` (e.g. :func:`agent_operator.ha.leader.standby_ready`) makes
    ``/readyz`` answer ready for a leader-election standby too: a rolling update with
    ``maxUnavailable: 0`` waits for the new (standby) pod to be ready before it stops the
    old leader.  Returns a handle whose ``stop()`` closes the socket.
    """
    server = ThreadingHTTPServer((host, port), _handler(ready, live or _always, standby or _never))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="agent-operator-health", daemon=True)
    thread.start()
    bound = int(server.server_address[1])
    log.info("health endpoint on %s:%d (/healthz /readyz /metrics)", host, bound)
    return HealthServer(server=server, thread=thread, host=host, port=bound)
