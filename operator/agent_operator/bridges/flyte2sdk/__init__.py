"""In-process bridge to connectors written with the Flyte 2 SDK (``flyte.connectors``).

Optional: needs the extra ``flyte-agent-operator[flyte2]``.  Importing this package does not
import the SDK; :func:`load_flyte2_agents` does.  Public SDK API is used throughout except
listing the SDK's connector registry (:mod:`._private`, pinned to the tested versions).
"""

from agent_operator.bridges.flyte2sdk.loader import (
    INSTALL_HINT,
    connector_entry_points,
    load_flyte2_agents,
    sdk_available,
)
from agent_operator.bridges.selection import FLYTE2

__all__ = ["FLYTE2", "INSTALL_HINT", "connector_entry_points", "load_flyte2_agents", "sdk_available"]
