"""The kopf side of the operator: what it asks kopf for and what it hands the controller."""

from __future__ import annotations

from typing import Any

from agent_operator.controller import kopf_adapter
from agent_operator.controller.cache import LAST_APPLIED, ObjectCache


def test_the_initial_listing_comes_in_pages() -> None:
    settings = kopf_adapter.settings(watch_inactivity_timeout=70, api_timeout=30)
    assert settings.watching.chunk_size == kopf_adapter.LIST_CHUNK
    assert 0 < kopf_adapter.LIST_CHUNK <= 1000


def test_a_watch_event_loses_managed_fields_and_last_applied_in_kopfs_own_body() -> None:
    meta = {"name": "a", "namespace": "ns", "uid": "u", "resourceVersion": "3",
            "annotations": {LAST_APPLIED: '{"apiVersion":"flyteagents.dev/v1alpha1"}\n', "team": "data"},
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]}
    body = {"metadata": meta, "spec": {"taskTemplate": {"type": "x"}}, "status": {}}
    got: list[tuple[str | None, dict[str, Any]]] = []
    kopf_adapter.deliver({"type": "ADDED", "object": body}, lambda t, b: got.append((t, b)))
    assert "managedFields" not in meta  # kopf's own dict, which it keeps until its worker is done
    assert meta["annotations"] == {"team": "data"}  # the user's own annotations stay
    [(event_type, delivered)] = got
    assert event_type == "ADDED" and delivered == body and delivered is not body
    assert delivered["metadata"] == {"name": "a", "namespace": "ns", "uid": "u", "resourceVersion": "3",
                                     "annotations": {"team": "data"}}


def test_the_cache_keeps_answers_without_managed_fields_or_last_applied() -> None:
    cache = ObjectCache()
    answer = {"metadata": {"name": "a", "namespace": "ns", "uid": "u", "resourceVersion": "4",
                           "annotations": {LAST_APPLIED: "{}\n"},
                           "managedFields": [{"manager": "agent-operator"}]}, "status": {"phase": "Running"}}
    cache.remember(answer)
    cached = cache.get(("ns", "a"))
    assert cached is not None and "managedFields" not in cached["metadata"]
    assert cached["metadata"]["annotations"] == {}
    assert cached["status"] == {"phase": "Running"}
