"""A git server on loopback: git's own ``http-backend`` behind a small threaded HTTP server.

Flux's source-controller clones over the smart HTTP protocol exactly as it would from a
hosted git service.  Tests commit to a working clone and push to the bare repository through
the filesystem (:class:`GitRepo`); the server only reads (``git-upload-pack``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Mapping

#: request headers handed to http-backend as CGI ``HTTP_*`` variables
_FORWARDED = ("Content-Encoding", "Git-Protocol", "Accept", "User-Agent")


def _git(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env=dict(os.environ, **(env or {})), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stdout}")
    return proc.stdout


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._cgi()

    def do_POST(self) -> None:  # noqa: N802
        self._cgi()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        return

    def _cgi(self) -> None:
        path, _, query = self.path.partition("?")
        if "receive-pack" in path or "receive-pack" in query:
            self.send_error(403, "this server is read-only: push to the bare repository on disk")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        for header in _FORWARDED:
            if self.headers.get(header):
                env["HTTP_" + header.upper().replace("-", "_")] = self.headers[header]
        if env.get("HTTP_GIT_PROTOCOL"):
            env["GIT_PROTOCOL"] = env["HTTP_GIT_PROTOCOL"]
        proc = subprocess.run(["git", "http-backend"], input=body, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=120)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        self.root = root
        super().__init__(("127.0.0.1", 0), _Handler)


class GitServer:
    """Serve every bare repository under ``root`` at ``http://127.0.0.1:PORT/<name>.git``."""

    def __init__(self, root: Path | None = None) -> None:
        self._owns_root = root is None
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="agent-operator-git-"))
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port the server listens on (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("GitServer is not started")
        return int(self._server.server_address[1])

    def url(self, name: str) -> str:
        """Clone URL of the bare repository ``name``."""
        return f"http://127.0.0.1:{self.port}/{name}.git"

    def start(self) -> "GitServer":
        """Listen on a free loopback port in a background thread."""
        self._server = _Server(self.root)
        self._thread = threading.Thread(target=self._server.serve_forever, name="git-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; remove ``root`` if this object created it."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "GitServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def create_repo(self, name: str, workdir: Path, branch: str = "main") -> "GitRepo":
        """A new bare repository ``name`` and a working clone of it in ``workdir``."""
        bare = self.root / f"{name}.git"
        _git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(bare))
        _git("init", "--quiet", f"--initial-branch={branch}", str(workdir))
        _git("remote", "add", "origin", str(bare), cwd=workdir)
        return GitRepo(workdir, branch, self.url(name))


class GitRepo:
    """A working clone whose commits are pushed to the served bare repository."""

    _IDENTITY = {"GIT_AUTHOR_NAME": "gitops test", "GIT_AUTHOR_EMAIL": "gitops@example.invalid",
                 "GIT_COMMITTER_NAME": "gitops test", "GIT_COMMITTER_EMAIL": "gitops@example.invalid"}

    def __init__(self, workdir: Path, branch: str, url: str) -> None:
        self.workdir = workdir
        self.branch = branch
        self.url = url

    def write(self, relpath: str, text: str) -> None:
        """Create or overwrite a file of the working tree."""
        target = self.workdir / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def remove(self, relpath: str) -> None:
        """Delete a file of the working tree."""
        (self.workdir / relpath).unlink()

    def commit(self, message: str) -> str:
        """Commit everything, push it, and return the new revision."""
        _git("add", "--all", cwd=self.workdir)
        _git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.workdir, env=self._IDENTITY)
        _git("push", "--quiet", "origin", f"HEAD:{self.branch}", cwd=self.workdir)
        return _git("rev-parse", "HEAD", cwd=self.workdir).strip()


def main(argv: list[str] | None = None) -> int:
    """``python -m agent_operator.testing.gitserver --root DIR [--port N]``: serve until interrupted."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m agent_operator.testing.gitserver")
    parser.add_argument("--root", type=Path, required=True, help="directory holding <name>.git bare repositories")
    parser.add_argument("--port-file", type=Path, default=None, help="write the chosen port here once listening")
    args = parser.parse_args(argv)
    args.root.mkdir(parents=True, exist_ok=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    server = GitServer(args.root).start()
    try:
        if args.port_file is not None:
            args.port_file.write_text(f"{server.port}\n")
        print(f"serving {args.root} at http://127.0.0.1:{server.port}/", flush=True)
        done.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
