"""The demo's HTTP server: what the example webhook AgentTasks call.

    python examples/webhook_server.py --port 18080      # 127.0.0.1 only

Routes (every request is logged as one JSON line on stdout):

* ``GET /status`` - ``{"status": "ok", "query": {...}}`` (examples/webhook-get.yaml);
* ``POST /orders/<id>`` - echoes the JSON body and the ``X-Customer`` header with
  ``{"accepted": true, ...}`` (examples/webhook-post-inputs.yaml);
* ``GET /healthz`` - ``ok`` (for a readiness wait);
* anything else - 404.

Standard library only, so it runs wherever Python does.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 64 * 1024


class DemoHandler(BaseHTTPRequestHandler):
    """The routes above."""

    server_version = "agent-operator-demo/1"

    def _reply(self, status: int, payload: Any) -> None:
        body = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _log(self, **fields: Any) -> None:
        print(json.dumps({"method": self.command, "path": self.path, **fields}), flush=True)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        self._log(query=query)
        if url.path == "/healthz":
            self._reply(200, "ok")
        elif url.path == "/status":
            self._reply(200, {"status": "ok", "query": query})
        else:
            self._reply(404, {"error": f"no route for GET {url.path}"})

    def do_POST(self) -> None:  # noqa: N802
        url = urllib.parse.urlsplit(self.path)
        length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"null")
        except json.JSONDecodeError:
            body = raw.decode(errors="replace")
        self._log(body=body)
        parts = url.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "orders":
            self._reply(200, {"accepted": True, "order": parts[1], "customer": self.headers.get("X-Customer"),
                              "received": body})
        else:
            self._reply(404, {"error": f"no route for POST {url.path}"})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        """Silence the default stderr access log (requests are logged as JSON on stdout)."""


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted."""
    parser = argparse.ArgumentParser(description="the demo's webhook server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), DemoHandler)
    print(f"demo webhook server on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
