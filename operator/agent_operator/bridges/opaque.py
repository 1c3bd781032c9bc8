"""Resource metadata that is someone else's bytes.

A bridged or remote agent issues its own ``resource_meta`` (flytekit: JSON of its
dataclass; a remote service: whatever it likes).  The operator must store exactly those
bytes and hand them back unchanged, so the bridge wraps them instead of re-encoding.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent_operator.sdk import ResourceMeta


@dataclass
class OpaqueResourceMeta(ResourceMeta):
    """``encode()`` is the wrapped bytes themselves; ``decode()`` wraps them again."""

    data: bytes = b""

    def encode(self) -> bytes:
        """The bytes the foreign agent issued, unchanged."""
        return bytes(self.data)

    @classmethod
    def decode(cls, data: bytes) -> "OpaqueResourceMeta":
        """Wrap stored bytes without interpreting them."""
        return cls(data=bytes(data))
