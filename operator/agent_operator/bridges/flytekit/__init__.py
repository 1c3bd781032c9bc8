"""In-process bridge to agents/connectors written for flytekit (extra ``[flytekit]``).

Importing this package does not import flytekit; :func:`load_flytekit_agents` does.
Without flytekit installed, :func:`missing_agent_hint` tells a user what to install.
"""

from agent_operator.bridges.flytekit.availability import (
    EXTRA,
    INSTALL_HINT,
    KNOWN_PLUGIN_TASK_TYPES,
    flytekit_available,
    missing_agent_hint,
)
from agent_operator.bridges.flytekit.loader import (
    FlytekitNotInstalled,
    flytekit_connectors,
    import_flytekit,
    load_flytekit_agents,
)

__all__ = [
    "EXTRA",
    "INSTALL_HINT",
    "KNOWN_PLUGIN_TASK_TYPES",
    "FlytekitNotInstalled",
    "flytekit_available",
    "flytekit_connectors",
    "import_flytekit",
    "load_flytekit_agents",
    "missing_agent_hint",
]
