"""Whether the flytekit bridge can run here, and what to tell a user when it cannot.

Nothing in this module imports flytekit: it is what the operator uses to explain a
missing agent when the optional extra ``flyte-agent-operator[flytekit]`` is not
installed, or installed but switched off.
"""

from __future__ import annotations

import importlib.util

from agent_operator.sdk import TaskCategory

#: the pip requirement that brings the bridge's dependencies
EXTRA = "flyte-agent-operator[flytekit]"
INSTALL_HINT = f"pip install '{EXTRA}'"

#: task types of well-known flytekit plugin connectors -> the plugin distribution serving them
KNOWN_PLUGIN_TASK_TYPES: dict[str, str] = {
    "bigquery_query_job_task": "flytekitplugins-bigquery",
    "snowflake": "flytekitplugins-snowflake",
    "spark": "flytekitplugins-spark",
    "databricks": "flytekitplugins-spark",
    "openai-batch": "flytekitplugins-openai",
    "chatgpt": "flytekitplugins-openai",
    "airflow": "flytekitplugins-airflow",
    "boto": "flytekitplugins-awssagemaker",
    "sagemaker-endpoint": "flytekitplugins-awssagemaker",
    "mmcloud_task": "flytekitplugins-mmcloud",
    "perian_task": "flytekitplugins-perian-job",
    "slurm": "flytekitplugins-slurm",
    "slurm_fn": "flytekitplugins-slurm",
}
#: task types flytekit itself serves (no plugin needed)
FLYTEKIT_CORE_TASK_TYPES: frozenset[str] = frozenset({"sensor", "webhook"})


def flytekit_available() -> bool:
    """True when ``import flytekit`` can succeed (checked without importing it)."""
    try:
        return importlib.util.find_spec("flytekit") is not None
    except (ImportError, ValueError):
        return False


def flytekit_plugin_entry_points() -> list[str]:
    """Names of installed ``flytekit.plugins`` entry points (flytekit's plugin discovery), without importing them."""
    from importlib import metadata

    return sorted(ep.name for ep in metadata.entry_points(group="flytekit.plugins"))


def missing_agent_hint(category: TaskCategory, bridge_enabled: bool, installed: bool | None = None) -> str | None:
    """A sentence telling what to install or switch on so ``category`` gets an agent.

    ``bridge_enabled`` says whether the flytekit bridge was loaded in this process.
    Returns None when there is nothing flytekit-specific to say (the bridge is on and the
    type is not a known plugin type).
    """
    installed = flytekit_available() if installed is None else installed
    plugin = KNOWN_PLUGIN_TASK_TYPES.get(category.name)
    if not installed:
        what = INSTALL_HINT + (f" {plugin}" if plugin else "")
        known = f"task type {category.name!r} is served by a flytekit connector" if plugin or (
            category.name in FLYTEKIT_CORE_TASK_TYPES
        ) else f"if task type {category.name!r} is served by a flytekit agent/connector"
        return (
            f"Hint: {known}: flytekit is not installed in the operator image; "
            f"install it with `{what}` (the flytekit bridge then loads installed flytekitplugins-* "
            f"automatically; name your own connector modules with --flytekit-module)."
        )
    if not bridge_enabled:
        return (
            f"Hint: flytekit is installed but the flytekit bridge is off; start the operator with "
            f"--flytekit on to serve flytekit agents/connectors{' such as ' + plugin if plugin else ''}."
        )
    if plugin:
        return f"Hint: task type {category.name!r} is served by {plugin}; install it (`pip install {plugin}`)."
    return None
