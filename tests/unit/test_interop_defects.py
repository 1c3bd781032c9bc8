"""The three behaviours in which the operator differed from flytekit's own connector service
when real plugins ran through it (issue 18): errors wrapped by client libraries, Secret
values with a trailing newline, and outputs with null members.

Errors come from the real client libraries the plugins use (openai on httpx2, aioboto3 on
aiobotocore) talking to real loopback sockets, not from hand-built exception objects.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from agent_operator.controller.backend import status_write
from agent_operator.core.answers import ErrorKind, classify, outputs_json
from agent_operator.core.runner import secret_text
from agent_operator.serialization import plain_map_to_literal_map

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_http_server import closed_port_url, serve  # noqa: E402


def _openai_error(base_url: str, api_key: str) -> BaseException:
    import openai

    async def call() -> None:
        client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url + "/v1", max_retries=0)
        await client.batches.retrieve("batch_1")

    with pytest.raises(openai.APIConnectionError) as info:
        asyncio.run(call())
    return info.value


def test_an_outage_wrapped_by_the_openai_client_is_transient() -> None:
    err = _openai_error(closed_port_url(), "sk-test")
    assert classify(err).kind == ErrorKind.TRANSIENT


def test_an_illegal_header_wrapped_by_the_openai_client_stays_permanent() -> None:
    with serve({}) as srv:
        err = _openai_error(srv.base, "sk-test\n")  # a key read with its newline
    assert "Illegal header value" in str(err.__cause__)
    assert classify(err).kind == ErrorKind.PERMANENT


def test_an_outage_wrapped_by_botocore_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    import aioboto3

    for key, value in {"AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "x", "AWS_MAX_ATTEMPTS": "1",
                       "AWS_RETRY_MODE": "standard", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(key, value)

    async def call() -> None:
        async with aioboto3.Session().client("sagemaker", region_name="us-east-2",
                                             endpoint_url=closed_port_url()) as client:
            await client.describe_endpoint(EndpointName="ep")

    with pytest.raises(Exception) as info:
        asyncio.run(call())
    assert type(info.value).__name__ == "EndpointConnectionError"
    assert not isinstance(info.value, ConnectionError)  # botocore's own type: only its cause chain says so
    assert classify(info.value).kind == ErrorKind.TRANSIENT


def test_a_plain_error_raised_while_handling_nothing_is_permanent() -> None:
    assert classify(KeyError("openai_organization")).kind == ErrorKind.PERMANENT


def test_secret_values_are_stripped_as_flytekit_strips_them() -> None:
    assert secret_text({"openai": {"FLYTE_OPENAI_API_KEY": "sk-test\n", "org": "  o\r\n"}}) == {
        "openai": {"FLYTE_OPENAI_API_KEY": "sk-test", "org": "o"}}


def test_outputs_keep_null_members_and_null_outputs() -> None:
    from flyteidl.core import types_pb2

    struct = types_pb2.LiteralType(simple=types_pb2.STRUCT)
    lm = plain_map_to_literal_map({"result": {"output_file_id": None, "id": "b1", "errors": None}},
                              {"result": struct})
    assert outputs_json(lm) == {"result": {"output_file_id": None, "id": "b1", "errors": None}}


def test_status_with_a_null_output_is_written_by_json_patch_and_only_once() -> None:
    old = {"phase": "Running", "transientFailures": 1}
    new = {"phase": "Succeeded", "outputs": {"result": {"errors": None, "id": "b1"}}}
    patch = status_write(old, new)
    assert patch == [{"op": "add", "path": "/status", "value": new}]
    assert status_write(new, new) is None  # stored as computed: nothing to write next time
    later = {**new, "observedGeneration": 2}
    assert status_write(new, later) == {"observedGeneration": 2}  # unchanged outputs: merge patch again
    assert status_write(old, {"phase": "Succeeded"}) == {"phase": "Succeeded", "transientFailures": None}
