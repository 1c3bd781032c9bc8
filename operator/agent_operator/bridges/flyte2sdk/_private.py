"""The one place the in-process Flyte 2 bridge uses something the ``flyte`` SDK does not export.

``flyte.connectors.ConnectorRegistry`` has a public ``register`` and ``get_connector`` but
no public way to list what is registered; its own server (``c0``) lists with
``ConnectorRegistry._list_connectors()``.  That call is made here and nowhere else, and only
for the SDK versions this was tested with (:data:`TESTED`); outside them the bridge refuses
to load with a message saying so, rather than misbehaving quietly.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

#: the ``flyte`` versions whose private registry listing was tested (tests/unit/test_flyte2_in_process.py)
TESTED = ((2, 12), (2, 13))  # [low, high)


def sdk_version() -> str:
    """The installed ``flyte`` distribution's version."""
    return metadata.version("flyte")


def check_version() -> None:
    """Raise ImportError unless the installed SDK is in the tested range."""
    version = sdk_version()
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if not (TESTED[0] <= parts < TESTED[1]):
        low, high = (".".join(map(str, v)) for v in TESTED)
        raise ImportError(f"the in-process Flyte 2 bridge was tested with flyte >={low},<{high}; flyte {version} is "
                          f"installed (serve its connectors with `c0` and use --remote-protocol flyte2 instead)")


def registered_categories() -> list[tuple[str, str, int]]:
    """``(connector name, task type, version)`` for every connector in the SDK's registry."""
    from flyte.connectors import ConnectorRegistry

    listed: list[Any] = ConnectorRegistry._list_connectors()  # noqa: SLF001 - see module docstring
    return [(c.name, cat.name, int(cat.version)) for c in listed for cat in c.supported_task_categories]
