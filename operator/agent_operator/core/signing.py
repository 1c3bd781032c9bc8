"""HMAC-signed resourceMeta: the status subresource is writable by users, the agent's job
handle must not be.

``status.resourceMeta`` is ``v1.<attempt>.<payload>.<mac>`` (base64url, no padding) where
the MAC covers the object's uid, the attempt and the payload: a value copied from another
AgentTask or another attempt fails verification just like an edited one.  The key lives in
a Secret the operator creates and owns (``--signing-secret NS/NAME``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _secrets

VERSION = "v1"
KEY_BYTES = 32
#: verified values remembered (one per object); past this many the memory starts over
MAX_REMEMBERED = 1 << 17


class TamperedResourceMeta(ValueError):
    """``status.resourceMeta`` does not carry a valid signature for this object and attempt."""


def new_key() -> bytes:
    """A fresh random signing key."""
    return _secrets.token_bytes(KEY_BYTES)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs and verifies resourceMeta with one key.

    A running task's ``resourceMeta`` is verified before every poll (twice: deciding, then
    decoding for the call) while it rarely changes, so the last value verified for each
    object is remembered: the same string, uid and attempt verify to the same bytes.  A
    value that fails is never remembered; :meth:`forget` drops an object that is gone.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("signing key must be at least 16 bytes")
        self._key = bytes(key)
        self._verified: dict[str, tuple[str, int, bytes]] = {}

    def _mac(self, uid: str, attempt: int, payload: str) -> str:
        msg = f"{VERSION}\n{uid}\n{attempt}\n{payload}".encode()
        return _b64(hmac.new(self._key, msg, hashlib.sha256).digest())

    def sign(self, meta: bytes, *, uid: str, attempt: int) -> str:
        """The signed string stored in status."""
        payload = _b64(meta)
        return f"{VERSION}.{attempt}.{payload}.{self._mac(uid, attempt, payload)}"

    def verify(self, signed: str, *, uid: str, attempt: int) -> bytes:
        """The metadata bytes, or TamperedResourceMeta naming what is wrong."""
        known = self._verified.get(uid)
        if known is not None and known[1] == attempt and known[0] == signed:
            return known[2]
        data = self._check(signed, uid=uid, attempt=attempt)
        if len(self._verified) >= MAX_REMEMBERED:
            self._verified.clear()
        self._verified[uid] = (signed, attempt, data)
        return data

    def forget(self, uid: str) -> None:
        """Drop what is remembered about the object with ``uid`` (deleted or forgotten)."""
        self._verified.pop(uid, None)

    def _check(self, signed: str, *, uid: str, attempt: int) -> bytes:
        parts = signed.split(".") if isinstance(signed, str) else []
        if len(parts) != 4 or parts[0] != VERSION:
            raise TamperedResourceMeta("status.resourceMeta is not a value this operator wrote (bad format)")
        _, att, payload, mac = parts
        if att != str(attempt):
            raise TamperedResourceMeta(f"status.resourceMeta belongs to attempt {att}, status.attempt is {attempt}")
        if not hmac.compare_digest(mac, self._mac(uid, attempt, payload)):
            raise TamperedResourceMeta("status.resourceMeta signature does not match (edited or copied from another object)")
        try:
            return _unb64(payload)
        except ValueError as e:  # pragma: no cover - the MAC already matched
            raise TamperedResourceMeta(f"status.resourceMeta payload undecodable: {e}") from e
