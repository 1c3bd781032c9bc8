"""A real HTTP server on 127.0.0.1 (ephemeral port) for the built-in agent tests.

Routes are given as ``{(method, path): handler}`` where a handler takes the recorded
request and returns ``(status, headers, body)``.  Every request is recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


Reply = tuple[int, dict[str, str], bytes]
Handler = Callable[[Recorded], Reply]


@dataclass
class Server:
    base: str
    requests: list[Recorded] = field(default_factory=list)


@contextmanager
def serve(routes: dict[tuple[str, str], Handler]) -> Iterator[Server]:
    state = Server(base="")

    class H(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            parts = urlsplit(self.path)
            rec = Recorded(self.command, parts.path, parts.query, dict(self.headers), self.rfile.read(length))
            state.requests.append(rec)
            handler = routes.get((self.command, parts.path))
            status, headers, body = handler(rec) if handler else (404, {}, b"no such route")
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_HEAD = _handle

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=30)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"
