"""``webhook``: the sync agent for flytekit's ``WebhookTask`` (flytekit.extras.webhook).

The TaskTemplate's ``custom`` holds ``url``, ``method`` (GET or POST), ``headers``,
``data``, ``show_data``, ``show_url`` and ``timeout_sec``; strings may contain
``{inputs.x}`` placeholders.  GET sends ``data`` as the query string, POST as a JSON body.

Differences from flytekit's connector, on purpose: any 2xx succeeds (not only 200); a
failed call reports the status and a bounded excerpt of the body; an unreachable server
or a 429/503 answer raises TransientAgentError so the operator retries.  A timeout fails
the task: the server may have acted on the request, and a retry could repeat it.

The output ``info`` is encoded with the type the template's interface declares (for
flytekit 1.16 a msgpack-encoded ``dict``), so downstream Flyte tasks read it unchanged.
"""

from __future__ import annotations

from typing import Any

from flyteidl.core import literals_pb2, tasks_pb2
from google.protobuf import json_format

from agent_operator.agents import http
from agent_operator.agents.templating import TemplateError, inputs_string_repr, render
from agent_operator.sdk import Resource, SyncAgentBase, TaskExecution
from agent_operator.serialization import plain_map_to_literal_map

TASK_TYPE = "webhook"
DEFAULT_TIMEOUT_SEC = 10.0


class WebhookAgent(SyncAgentBase):
    """Performs the HTTP call a WebhookTask describes and returns ``info``."""

    name = "Webhook Agent"

    def __init__(self) -> None:
        super().__init__(task_type_name=TASK_TYPE)

    def do(
        self,
        task_template: tasks_pb2.TaskTemplate,
        output_prefix: str,
        inputs: literals_pb2.LiteralMap | None = None,
        **kwargs: Any,
    ) -> Resource:
        """Render the request from the template and inputs, send it, report the answer."""
        custom = json_format.MessageToDict(task_template.custom) if task_template.HasField("custom") else {}
        try:
            call = render(custom, {"inputs": inputs_string_repr(inputs)})
        except TemplateError as e:
            return Resource(phase=TaskExecution.FAILED, message=f"webhook template: {e}")
        url = call.get("url")
        method = str(call.get("method", "POST")).upper()
        if not isinstance(url, str) or not url:
            return Resource(phase=TaskExecution.FAILED, message="webhook template: 'url' is missing")
        if method not in {"GET", "POST"}:
            return Resource(phase=TaskExecution.FAILED, message=f"webhook template: method must be GET or POST, got {method}")
        body = call.get("data") or {}
        headers = call.get("headers") or {}
        timeout = float(call.get("timeout_sec") or DEFAULT_TIMEOUT_SEC)

        try:
            if method == "GET":
                answer = http.request("GET", url, headers=headers, params=body, timeout=timeout)
            else:
                answer = http.request("POST", url, headers=headers, json_body=body, timeout=timeout)
        except TimeoutError as e:
            return Resource(phase=TaskExecution.FAILED, message=f"Webhook timed out: {e}")
        if not 200 <= answer.status < 300:
            return Resource(
                phase=TaskExecution.FAILED,
                message=f"Webhook failed with status code {answer.status}, response: {http.excerpt(answer.body)}",
            )

        info: dict[str, Any] = {"status_code": answer.status, "response_data": answer.body}
        if call.get("show_data"):
            info["input_data"] = body
        if call.get("show_url"):
            info["url"] = url
        declared = {k: v.type for k, v in task_template.interface.outputs.variables.items()}
        return Resource(
            phase=TaskExecution.SUCCEEDED,
            message="Webhook was successfully invoked!",
            outputs=plain_map_to_literal_map({"info": info}, declared),
        )
