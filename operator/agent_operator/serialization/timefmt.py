"""Datetime and duration parsing for plain input values.

Users write times in YAML; YAML already turns ``2024-05-01T12:00:00Z`` into a datetime,
and a duration may come as seconds, ``90s``/``1.5s`` (protobuf JSON form), ``1h30m``
(Go form, as in kubectl) or a ``timedelta``.  Rendering back uses the protobuf JSON form,
which is also how flyteidl shows them, so a rendered value parses to the same literal.
"""

from __future__ import annotations

import datetime as dt
import re

from google.protobuf import duration_pb2, timestamp_pb2

_GO_DURATION = re.compile(r"(?P<num>\d+(?:\.\d*)?|\.\d+)(?P<unit>h|ms|m|s|us|µs|ns)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def to_timestamp(value: object) -> timestamp_pb2.Timestamp | None:
    """A Timestamp for a datetime/date/RFC 3339 string, or None when ``value`` is none of these.

    Naive datetimes are taken as UTC: an AgentTask has no local time zone.
    """
    ts = timestamp_pb2.Timestamp()
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        ts.FromDatetime(aware.astimezone(dt.timezone.utc))
        return ts
    if isinstance(value, dt.date):
        ts.FromDatetime(dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc))
        return ts
    if isinstance(value, str):
        try:
            ts.FromJsonString(value)
            return ts
        except ValueError:
            pass
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        return to_timestamp(parsed)
    return None


def to_duration(value: object) -> duration_pb2.Duration | None:
    """A Duration for a timedelta, a number of seconds or a duration string, else None."""
    d = duration_pb2.Duration()
    if isinstance(value, bool):
        return None
    if isinstance(value, dt.timedelta):
        d.FromTimedelta(value)
        return d
    if isinstance(value, (int, float)):
        d.FromNanoseconds(round(value * 1e9))
        return d
    if isinstance(value, str):
        text = value.strip()
        try:
            d.FromJsonString(text)
            return d
        except ValueError:
            pass
        sign = -1 if text.startswith("-") else 1
        body = text.lstrip("+-")
        if body and _GO_DURATION.sub("", body) == "" and _GO_DURATION.search(body):
            nanos = 0
            for m in _GO_DURATION.finditer(body):
                nanos += round(float(m["num"]) * _UNIT_SECONDS[m["unit"]] * 1e9)
            d.FromNanoseconds(sign * nanos)
            return d
    return None
