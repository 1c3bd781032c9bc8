"""The API client's JSON: orjson where it can, the standard library where orjson refuses."""

from __future__ import annotations

import json

from agent_operator.controller.client import from_json, to_json


def test_bodies_encode_compact_and_round_trip() -> None:
    body = {"status": {"phase": "Running", "attempt": 1, "outputs": {"x": 1.5, "ok": True, "none": None},
                       "logLinks": ({"name": "a", "uri": "https://x"},)}}
    raw = to_json(body)
    assert isinstance(raw, bytes) and b" " not in raw
    assert from_json(raw) == json.loads(json.dumps(body))


def test_what_orjson_refuses_to_encode_goes_through_the_standard_library() -> None:
    assert to_json({"n": 2**70, 3: "int key"}) == b'{"n":1180591620717411303424,"3":"int key"}'
    # an integer beyond 64 bits reads as a float, as the API server stores it (float64)
    assert from_json(b'{"n": 123456789012345678901234567890}') == {"n": 1.2345678901234568e29}


def test_keys_are_shared_across_documents() -> None:
    # why orjson: every cached AgentTask's ~40 keys are the same strings, not new ones per answer
    a = from_json(b'{"metadata": {"resourceVersion": "1"}, "status": {"observedGeneration": 1}}')
    b = from_json(b'{"metadata": {"resourceVersion": "2"}, "status": {"observedGeneration": 2}}')
    key_a = next(iter(a["status"]))
    key_b = next(iter(b["status"]))
    assert key_a == key_b == "observedGeneration" and key_a is key_b
