"""``sensor``: the async agent for flytekit's ``FileSensor`` (flytekit.sensor).

flytekit serializes a sensor as task type ``sensor`` whose ``custom`` names the sensor
class (``sensor_module``/``sensor_name``) and its ``sensor_config``; the watched path is
the input ``path``.  ``create`` records that in :class:`SensorMetadata` (the same fields
as flytekit's, so stored metadata means the same in both), ``get`` checks once whether
the path exists and ``delete`` has nothing to stop.  How often ``get`` runs is the
operator's poll interval, not the agent's.

Paths: local paths and ``file://`` URLs are checked on this machine (the operator's
pod), ``http(s)://`` URLs with a HEAD request (GET when HEAD is not allowed), anything
else through fsspec when it is installed.
"""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from flyteidl.core import literals_pb2, tasks_pb2
from google.protobuf import json_format

from agent_operator.agents import http
from agent_operator.sdk import AsyncAgentBase, Resource, ResourceMeta, TaskExecution, TransientAgentError
from agent_operator.serialization import literal_map_to_plain

TASK_TYPE = "sensor"
#: (sensor_module, sensor_name) pairs this agent can evaluate without flytekit
FILE_SENSORS = frozenset(
    {
        ("flytekit.sensor.file_sensor", "FileSensor"),
        ("flytekit.sensor", "FileSensor"),
        ("agent_operator.agents.sensor", "FileSensor"),
    }
)
HTTP_TIMEOUT_SEC = 10.0


@dataclass
class SensorMetadata(ResourceMeta):
    """What flytekit's SensorEngine stores: the sensor class, its config, its plain inputs."""

    sensor_module: str
    sensor_name: str
    sensor_config: dict[str, Any] | None = None
    inputs: dict[str, Any] | None = None


class SensorAgent(AsyncAgentBase):
    """Succeeds once the ``path`` input exists."""

    name = "Sensor"

    def __init__(self) -> None:
        super().__init__(task_type_name=TASK_TYPE, metadata_type=SensorMetadata)

    def create(
        self,
        task_template: tasks_pb2.TaskTemplate,
        output_prefix: str,
        inputs: literals_pb2.LiteralMap | None = None,
        task_execution_metadata: Any = None,
        **kwargs: Any,
    ) -> SensorMetadata:
        """Check the template names a file sensor and remember its ``path`` input."""
        custom = json_format.MessageToDict(task_template.custom) if task_template.HasField("custom") else {}
        module, name = custom.get("sensor_module"), custom.get("sensor_name")
        if not isinstance(module, str) or not isinstance(name, str):
            raise ValueError("sensor template: custom.sensor_module and custom.sensor_name are required")
        if (module, name) not in FILE_SENSORS:
            raise ValueError(
                f"sensor {module}.{name} is not built in: without flytekit only FileSensor can run "
                f"(a custom sensor's poke() needs the flytekit bridge)"
            )
        plain = literal_map_to_plain(inputs) if inputs is not None else {}
        path = plain.get("path")
        if not isinstance(path, str) or not path:
            raise ValueError("sensor input 'path' is required (a local path or a URL)")
        return SensorMetadata(
            sensor_module=module, sensor_name=name, sensor_config=custom.get("sensor_config"), inputs=plain
        )

    def get(self, resource_meta: ResourceMeta, **kwargs: Any) -> Resource:
        """SUCCEEDED if the path exists now, RUNNING otherwise."""
        assert isinstance(resource_meta, SensorMetadata)
        path = str((resource_meta.inputs or {}).get("path", ""))
        found, detail = path_exists(path)
        if found:
            return Resource(phase=TaskExecution.SUCCEEDED, message=f"{_shown(path)} exists")
        return Resource(phase=TaskExecution.RUNNING, message=f"waiting for {_shown(path)}{detail}")

    def delete(self, resource_meta: ResourceMeta, **kwargs: Any) -> None:
        """Nothing runs remotely between polls."""
        return None


def _shown(path: str) -> str:
    """The path without a URL's query or credentials (they may hold tokens)."""
    parts = urllib.parse.urlsplit(path)
    if parts.scheme in ("http", "https"):
        return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"
    return path


def path_exists(path: str) -> tuple[bool, str]:
    """(exists, detail for the waiting message); raises TransientAgentError when unsure."""
    scheme = urllib.parse.urlsplit(path).scheme
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        local = urllib.request.url2pathname(urllib.parse.urlsplit(path).path) if scheme == "file" else path
        return os.path.exists(local), ""
    if scheme in ("http", "https"):
        return _http_exists(path)
    return _fsspec_exists(path, scheme), ""


def _http_exists(url: str) -> tuple[bool, str]:
    try:
        answer = http.request("HEAD", url, timeout=HTTP_TIMEOUT_SEC)
        if answer.status in (405, 501):
            answer = http.request("GET", url, timeout=HTTP_TIMEOUT_SEC)
    except TimeoutError as e:
        raise TransientAgentError(str(e)) from e
    if answer.status < 400:
        return True, ""
    if answer.status >= 500:
        raise TransientAgentError(f"{_shown(url)}: HTTP {answer.status}")
    return False, f" (HTTP {answer.status})"


def _fsspec_exists(path: str, scheme: str) -> bool:
    try:
        import fsspec
    except ImportError as e:
        raise ValueError(
            f"sensor path scheme {scheme!r} needs fsspec and its {scheme} filesystem installed in the operator"
        ) from e
    try:
        fs, stripped = fsspec.core.url_to_fs(path)
    except (ImportError, ValueError) as e:
        raise ValueError(f"sensor path scheme {scheme!r}: {e}") from e
    try:
        return bool(fs.exists(stripped))
    except (ConnectionError, TimeoutError, OSError) as e:
        raise TransientAgentError(f"{scheme}: {e}") from e
