"""The committed CRD YAML is exactly what the Python model generates, and it documents every field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import yaml

from agent_operator.crd import manifest
from agent_operator.crd.names import CRD_NAME

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / f"{CRD_NAME}.yaml"


def _walk(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, sub in schema.get("properties", {}).items():
        yield f"{path}.{name}", sub
        yield from _walk(sub, f"{path}.{name}")
    if "items" in schema:
        yield from _walk(schema["items"], f"{path}[]")


def test_committed_crd_matches_the_model() -> None:
    assert CRD_PATH.read_text(encoding="utf-8") == manifest.render(), (
        f"{CRD_PATH} drifted from operator/agent_operator/crd/: run `make crds` and commit the result"
    )


def test_check_mode_reports_drift(tmp_path: Path) -> None:
    target = tmp_path / "crd.yaml"
    assert manifest.main(["-o", str(target)]) == 0
    assert manifest.main(["-o", str(target), "--check"]) == 0
    target.write_text(target.read_text() + "# edited\n")
    assert manifest.main(["-o", str(target), "--check"]) == 1


def test_names_scope_and_subresources() -> None:
    doc = yaml.safe_load(CRD_PATH.read_text())
    spec = doc["spec"]
    assert doc["metadata"]["name"] == "agenttasks.flyteagents.dev"
    assert spec["group"] == "flyteagents.dev" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "AgentTask" and spec["names"]["plural"] == "agenttasks"
    assert spec["names"]["shortNames"] == ["at"] and spec["names"]["categories"] == ["flyte"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["storage"] and version["served"]
    assert version["subresources"] == {"status": {}}


def test_printer_columns_show_message_only_when_wide() -> None:
    cols = {c["name"]: c for c in manifest.crd()["spec"]["versions"][0]["additionalPrinterColumns"]}
    for name in ("Type", "Phase", "Attempt", "Age"):
        assert cols[name].get("priority", 0) == 0
    assert cols["Message"]["priority"] == 1
    assert cols["Agent"]["jsonPath"] == ".status.agent.name"


def test_every_spec_and_status_field_has_a_description() -> None:
    schema = manifest.object_schema()
    missing = [
        path
        for top in ("spec", "status")
        for path, sub in _walk(schema["properties"][top], top)
        if not sub.get("description")
    ]
    assert missing == []
    assert schema["properties"]["spec"]["description"] and schema["properties"]["status"]["description"]


def test_spec_is_immutable_with_a_message_naming_what_to_do() -> None:
    rules = manifest.object_schema()["properties"]["spec"]["x-kubernetes-validations"]
    immutable = next(r for r in rules if r["rule"] == "self == oldSelf")
    assert "create a new AgentTask" in immutable["message"]


def test_status_contract_fields_present() -> None:
    status = manifest.object_schema()["properties"]["status"]["properties"]
    for name in ("phase", "reason", "message", "agent", "resourceMeta", "createPending", "attempt",
                 "logLinks", "outputs", "outputsRef", "customInfo", "transientFailures", "startTime",
                 "completionTime", "observedGeneration", "conditions"):
        assert name in status, name
    conditions = status["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(status["agent"]["properties"]) == {"name", "taskType", "taskTypeVersion", "sync"}
