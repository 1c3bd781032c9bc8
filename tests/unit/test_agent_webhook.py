"""The webhook agent runs flytekit 1.16's serialized WebhookTask against a real loopback server."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import msgpack
import pytest
from flyteidl.core import tasks_pb2

from agent_operator.agents.webhook import WebhookAgent
from agent_operator.sdk import AgentRegistry, Resource, TaskExecution, TransientAgentError, load_agents
from agent_operator.serialization import literal_map_to_plain, load_inputs, load_task_template
from agent_operator.serialization.literals import is_msgpack_struct

from agent_http_server import Recorded, closed_port_url, serve

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "flytekit"


def _template(name: str, base: str, **custom: Any) -> tasks_pb2.TaskTemplate:
    """A flytekit fixture template pointed at ``base`` (scheme://host:port), custom overrides applied."""
    raw = json.loads((FIXTURES / f"{name}.template.json").read_text())
    raw["custom"]["url"] = raw["custom"]["url"].replace("http://127.0.0.1:8000", base)
    raw["custom"].update(custom)
    return load_task_template(raw)


def _ok(rec: Recorded) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/json"}, json.dumps({"got": rec.body.decode()}).encode()


def test_post_renders_inputs_into_url_headers_and_json_body() -> None:
    with serve({("POST", "/items/42"): _ok}) as srv:
        template = _template("webhook_post", srv.base)
        inputs = load_inputs({"s": "hello", "item_id": 42}, template)
        res = WebhookAgent().do(template, "/tmp/out", inputs)
    assert res.phase == TaskExecution.SUCCEEDED, res.message
    (rec,) = srv.requests
    assert rec.headers["X-Request"] == "hello"
    assert rec.headers["Content-Type"] == "application/json"
    sent = json.loads(rec.body)
    # a whole-string placeholder keeps the input's type; an embedded one becomes text
    assert sent == {"q": "hello", "n": 42, "note": "item 42 of hello"}
    assert literal_map_to_plain(res.outputs) == {
        "info": {
            "status_code": 200,
            "response_data": json.dumps({"got": rec.body.decode()}),
            "input_data": sent,
            "url": f"{srv.base}/items/42",
        }
    }


def test_info_output_has_the_type_flytekit_declares_in_the_template() -> None:
    with serve({("POST", "/items/1"): _ok}) as srv:
        template = _template("webhook_post", srv.base)
        res = WebhookAgent().do(template, "/tmp/out", load_inputs({"s": "x", "item_id": 1}, template))
    declared = template.interface.outputs.variables["info"].type
    assert is_msgpack_struct(declared)  # flytekit's `dict`: STRUCT with the msgpack annotation
    info = res.outputs.literals["info"].scalar.binary
    assert info.tag == "msgpack"
    assert msgpack.unpackb(info.value)["status_code"] == 200
    # what the operator writes to status: plain JSON, no protobuf noise
    json.dumps(literal_map_to_plain(res.to_flyte_idl().outputs))


def test_get_sends_data_as_query_and_hides_url_and_data_unless_asked() -> None:
    with serve({("GET", "/status"): lambda rec: (200, {}, b"fine")}) as srv:
        template = _template("webhook_get", srv.base)
        res = WebhookAgent().do(template, "/tmp/out", load_inputs(None, template))
    assert srv.requests[0].query == "verbose=1"
    assert literal_map_to_plain(res.outputs) == {"info": {"status_code": 200, "response_data": "fine"}}


def test_any_2xx_succeeds() -> None:
    with serve({("POST", "/items/7"): lambda rec: (201, {}, b"created")}) as srv:
        template = _template("webhook_post", srv.base)
        res = WebhookAgent().do(template, "", load_inputs({"s": "a", "item_id": 7}, template))
    assert res.phase == TaskExecution.SUCCEEDED


def test_non_2xx_fails_with_status_and_bounded_body_excerpt() -> None:
    body = b"E" * 5000
    with serve({("POST", "/items/3"): lambda rec: (400, {}, body)}) as srv:
        template = _template("webhook_post", srv.base)
        res = WebhookAgent().do(template, "", load_inputs({"s": "a", "item_id": 3}, template))
    assert res.phase == TaskExecution.FAILED
    assert res.message.startswith("Webhook failed with status code 400, response: EEEE")
    assert res.message.endswith("... (4488 more characters)")
    assert len(res.message) < 700


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_answers_are_transient_with_retry_after(status: int) -> None:
    with serve({("POST", "/items/3"): lambda rec: (status, {"Retry-After": "7"}, b"slow down")}) as srv:
        template = _template("webhook_post", srv.base)
        with pytest.raises(TransientAgentError) as info:
            WebhookAgent().do(template, "", load_inputs({"s": "a", "item_id": 3}, template))
    assert info.value.retry_after == 7.0
    assert f"HTTP {status}" in str(info.value)


def test_unreachable_server_is_transient_and_does_not_leak_the_path() -> None:
    template = _template("webhook_post", closed_port_url())
    with pytest.raises(TransientAgentError, match="cannot reach http://127.0.0.1:") as info:
        WebhookAgent().do(template, "", load_inputs({"s": "secret-token", "item_id": 3}, template))
    assert "secret-token" not in str(info.value)


def test_timeout_fails_permanently_because_the_call_may_have_happened() -> None:
    release = threading.Event()

    def hang(rec: Recorded) -> tuple[int, dict[str, str], bytes]:
        release.wait(timeout=60)
        return 200, {}, b"late"

    with serve({("POST", "/items/3"): hang}) as srv:
        template = _template("webhook_post", srv.base, timeout_sec=0.2)
        try:
            res = WebhookAgent().do(template, "", load_inputs({"s": "a", "item_id": 3}, template))
        finally:
            release.set()
    assert res.phase == TaskExecution.FAILED
    assert "timed out" in res.message


def test_unknown_placeholder_fails_naming_available_inputs() -> None:
    template = _template("webhook_post", "http://127.0.0.1:1", url="http://127.0.0.1:1/{inputs.nope}")
    res = WebhookAgent().do(template, "", load_inputs({"s": "a", "item_id": 3}, template))
    assert res.phase == TaskExecution.FAILED
    assert "{inputs.nope}" in res.message and "inputs: item_id, s" in res.message


def test_webhook_agent_is_discovered_as_sync_agent() -> None:
    with AgentRegistry.snapshot():
        load_agents()
        agent = AgentRegistry.get_agent("webhook")
        assert isinstance(agent, WebhookAgent)
        assert AgentRegistry.get_agent_metadata("Webhook Agent").is_sync


def test_resource_round_trips_through_flyteidl() -> None:
    with serve({("GET", "/status"): lambda rec: (200, {}, b"fine")}) as srv:
        template = _template("webhook_get", srv.base)
        res = WebhookAgent().do(template, "", None)
    assert Resource.from_flyte_idl(res.to_flyte_idl()) == res
