"""Fault-injection helpers of the chaos suite: a TCP proxy whose connections can be frozen
(a watch stream that dies silently), the summary table, and scale knobs.

``AGENT_OPERATOR_CHAOS=full`` (``make chaos``) selects the issue's full sizes; ``make test``
runs the same tests with reduced sizes so every CI run still exercises each fault.
"""

from __future__ import annotations

import os
import select
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FULL = os.environ.get("AGENT_OPERATOR_CHAOS", "").lower() == "full"

#: rows of the summary table printed at the end of the session (tests/conftest.py)
RESULTS: list[dict[str, Any]] = []
COLUMNS = ("scenario", "tasks", "faults", "lost", "duplicates", "orphans", "stuck finalizers",
           "max recovery s", "unowned after lease expiry s", "re-asked creates")


def record(**row: Any) -> None:
    """Add one scenario's outcome to the summary table."""
    RESULTS.append(row)


def summary_lines() -> list[str]:
    """The summary table as markdown lines (empty when no chaos test ran)."""
    if not RESULTS:
        return []
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in RESULTS:
        cells = []
        for col in COLUMNS:
            value = row.get(col, "-")
            cells.append(f"{value:.1f}" if isinstance(value, float) else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


@dataclass
class FreezableProxy:
    """A loopback TCP proxy in front of the API server.

    ``freeze()`` stops moving bytes on every connection open at that moment while keeping
    the sockets open: no FIN, no RST - what a dropped conntrack entry or a hung load
    balancer does to a long-lived watch.  Connections opened afterwards work normally, so
    a client that notices the silence and reconnects recovers; one that does not goes deaf.
    """

    target_port: int
    host: str = "127.0.0.1"
    port: int = 0
    _generation: int = 0
    _frozen_below: int = 0
    _sockets: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _listener: socket.socket | None = None
    _closed: bool = False

    def start(self) -> "FreezableProxy":
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        listener.listen(256)
        self._listener = listener
        self.port = listener.getsockname()[1]
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()
        return self

    def freeze(self) -> int:
        """Freeze every connection open now; returns how many there were."""
        with self._lock:
            self._frozen_below = self._generation
            return len(self._sockets) // 2

    def close(self) -> None:
        self._closed = True
        with self._lock:
            socks = list(self._sockets)
            self._sockets.clear()
        for s in socks + ([self._listener] if self._listener else []):
            try:
                s.close()
            except OSError:
                pass

    def kubeconfig(self, original: str | os.PathLike[str], dest: Path) -> Path:
        """A copy of ``original`` whose server is this proxy (same certificates)."""
        config = yaml.safe_load(Path(original).read_text())
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = f"https://{self.host}:{self.port}"
        dest.write_text(yaml.safe_dump(config))
        return dest

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((self.host, self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._generation += 1
                generation = self._generation
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, generation), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket, generation: int) -> None:
        peers = {a: b, b: a}
        try:
            while not self._closed:
                if generation <= self._frozen_below:
                    # frozen: hold both sockets open and move nothing, forever
                    threading.Event().wait(1.0)
                    continue
                ready, _, _ = select.select([a, b], [], [], 0.5)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if generation <= self._frozen_below:
                        break  # froze while reading: drop it, like a black hole
                    peers[s].sendall(data)
        except OSError:
            return
        finally:
            if generation > self._frozen_below or self._closed:
                for s in (a, b):
                    try:
                        s.close()
                    except OSError:
                        pass
