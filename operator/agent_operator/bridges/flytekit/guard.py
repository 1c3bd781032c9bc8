"""Keep AgentTask authors from making flytekit's SensorEngine import arbitrary modules.

flytekit's ``SensorEngine`` takes ``sensor_module`` / ``sensor_name`` from the task template
and imports and calls them.  Under Flyte that template comes from a registered workflow;
here it comes from anyone allowed to create an AgentTask, and the call runs inside the
operator, next to its service-account token.  So before the engine sees a template, the
bridge checks that the module is flytekit's own (``flytekit.*``), a flytekit plugin's
(``flytekitplugins.*``) or one the admin named with ``--flytekit-module`` (or a submodule),
and that the attribute is a flytekit ``BaseSensor`` subclass.  Anything else fails the task
with a message saying how to allow it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Any

#: module prefixes a sensor may always come from
ALWAYS_ALLOWED = ("flytekit", "flytekitplugins")

_allowed: set[str] = set(ALWAYS_ALLOWED)


class SensorNotAllowed(ValueError):
    """The template names a sensor the operator does not load."""


def allow_modules(modules: Iterable[str]) -> None:
    """Also allow sensors from these modules (the ``--flytekit-module`` list) and their submodules."""
    _allowed.update(m for m in modules if m)


def _module_allowed(module: str) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in _allowed)


def check_sensor(custom: Mapping[str, Any]) -> None:
    """Raise SensorNotAllowed unless ``custom`` names an allowed BaseSensor subclass."""
    module, name = custom.get("sensor_module"), custom.get("sensor_name")
    if not isinstance(module, str) or not isinstance(name, str) or not module or not name:
        raise SensorNotAllowed("taskTemplate.custom: sensor_module and sensor_name are required for a sensor task")
    if not _module_allowed(module):
        raise SensorNotAllowed(
            f"taskTemplate.custom.sensor_module: {module!r} is not a module this operator loads sensors from "
            f"(allowed: {', '.join(sorted(_allowed))} and their submodules); an admin can allow it with "
            f"--flytekit-module {module}"
        )
    from flytekit.sensor.base_sensor import BaseSensor

    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise SensorNotAllowed(f"taskTemplate.custom: cannot load sensor {module}.{name}: {e}") from None
    if not (isinstance(obj, type) and issubclass(obj, BaseSensor)):
        raise SensorNotAllowed(f"taskTemplate.custom: {module}.{name} is not a flytekit BaseSensor subclass")
