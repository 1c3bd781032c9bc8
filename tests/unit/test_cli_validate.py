"""`agent-operator validate`: offline admission checks, decoding, agents, CI-friendly output."""

from __future__ import annotations

import base64
import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from admission_cases import CASES, SPEC_UPDATES, BadInput, manifest
from spec_strategies import manifests
from agent_operator.cli.main import build_parser, main
from agent_operator.cli.manifests import ManifestError, StrictLoader, load_documents, read_bounded
from agent_operator.cli.validate import MAX_FINDINGS, Options, admission_findings, validate_document, validate_text
from agent_operator.crd.admission import admission_check, admission_check_update
from agent_operator.crd.fields import InvalidField

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "flytekit"
KNOWN = frozenset({("sensor", 0), ("webhook", 0)})


def _run(argv: list[str], stdin: str = "") -> tuple[int, str]:
    args = build_parser().parse_args(["validate", *argv])
    out = io.StringIO()
    code = args.func(args, stdin=io.StringIO(stdin), out=out)
    return code, out.getvalue()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_admission_case_is_rejected_offline_naming_the_same_field(case: BadInput) -> None:
    result = validate_document(case.obj, "case.yaml", 1, Options(known_task_types=KNOWN))
    errors = [f for f in result.findings if f.severity == "error"]
    assert not result.valid and errors[0].field == case.field, errors


@pytest.mark.parametrize(("change_id", "change"), SPEC_UPDATES, ids=[u[0] for u in SPEC_UPDATES])
def test_spec_update_is_rejected_offline_with_the_immutability_message(change_id: str, change: dict[str, Any]) -> None:
    with pytest.raises(InvalidField) as err:
        admission_check_update(manifest("t"), manifest("t", spec=change))
    assert err.value.field == "spec" and "create a new AgentTask" in err.value.message


def test_omitting_a_defaulted_field_is_not_a_spec_change() -> None:
    admission_check_update(manifest("t", spec={"maxAttempts": 1, "deletionPolicy": "Delete"}), manifest("t"))


def test_valid_manifest_passes_and_other_kinds_are_skipped() -> None:
    text = yaml.safe_dump_all([manifest("ok"), {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}])
    code, out = _run(["--no-agents", "-"], stdin=text)
    assert code == 0
    assert "<stdin>:1: AgentTask ok is valid" in out and "<stdin>:2: skipped (ConfigMap)" in out


def test_errors_are_reported_as_file_doc_field_message(tmp_path: Path) -> None:
    path = tmp_path / "tasks.yaml"
    path.write_text(yaml.safe_dump_all([manifest("a"), manifest("b", spec={"timeout": "0s"})]))
    code, out = _run(["--no-agents", "-q", str(path)])
    assert code == 1
    assert f"{path}:2: spec.timeout: spec.timeout must be greater than 0" in out.splitlines()
    assert ":1:" not in out


def test_decoding_errors_name_the_field_inside_template_and_inputs() -> None:
    cases = {
        "spec.inputs.path": manifest(spec={"inputs": {"path": 3}}),
        "spec.inputs.nope": manifest(spec={"inputs": {"path": "/x", "nope": 1}}),
        "spec.taskTemplate.type": manifest(spec={"taskTemplate": {"id": {"name": "x"}}}),
        "spec.taskTemplateBase64": manifest(spec={"taskTemplate": None,
                                                  "taskTemplateBase64": base64.b64encode(b"\xff\xff\xff").decode()}),
    }
    for field, obj in cases.items():
        result = validate_document(obj, "f", 1, Options())
        assert [f.field for f in result.findings] == [field], (field, result.findings)


def test_typed_inputs_fixture_decodes_with_plain_values() -> None:
    template = json.loads((FIXTURES / "typed_inputs.template.json").read_text())
    inputs = {"i": 1, "f": 1.5, "s": "x", "b": True, "when": "2026-01-02T03:04:05Z", "wait": "90s",
              "ints": [1, 2], "weights": {"a": 0.5}, "doc": "/tmp/doc.txt", "extra": {"k": [1]}}
    obj = manifest(spec={"taskTemplate": template, "inputs": inputs})
    # a YAML timestamp stays a string, as kubectl sends it
    result = validate_text(yaml.safe_dump(obj).replace("'2026-01-02T03:04:05Z'", "2026-01-02T03:04:05Z"), "f", Options())
    assert result[0].valid, result[0].findings


def test_base64_template_from_a_pyflyte_fixture_is_accepted() -> None:
    data = base64.b64encode((FIXTURES / "file_sensor.template.pb").read_bytes()).decode()
    obj = manifest(spec={"taskTemplate": None, "taskTemplateBase64": data})
    assert validate_document(obj, "f", 1, Options(known_task_types=KNOWN)).findings == []


def test_unknown_task_type_is_a_warning_unless_agents_strict() -> None:
    obj = manifest(spec={"taskTemplate": {"type": "bigquery"}, "inputs": None})
    lenient = validate_document(obj, "f", 1, Options(known_task_types=KNOWN))
    assert lenient.valid and [f.severity for f in lenient.findings] == ["warning"]
    assert "bigquery" in lenient.findings[0].message and "sensor" in lenient.findings[0].message
    strict = validate_document(obj, "f", 1, Options(known_task_types=KNOWN, agents_strict=True))
    assert not strict.valid and strict.findings[0].field == "spec.taskTemplate.type"


def test_agents_strict_uses_the_agents_the_operator_would_load() -> None:
    obj = manifest(spec={"taskTemplate": {"type": "bigquery"}, "inputs": None})
    code, out = _run(["--agents-strict", "--flytekit", "off", "-q", "-"], stdin=yaml.safe_dump(obj))
    assert code == 1 and "no loaded agent serves task type 'bigquery'" in out
    code, _ = _run(["--agents-strict", "--flytekit", "off", "-q", "-"], stdin=yaml.safe_dump(manifest()))
    assert code == 0


def test_json_output_for_ci() -> None:
    text = yaml.safe_dump_all([manifest("a"), manifest("b", spec={"maxAttempts": 0})])
    code, out = _run(["--no-agents", "-o", "json", "-"], stdin=text)
    payload = json.loads(out)
    assert code == 1 and payload["valid"] is False
    second = payload["documents"][1]
    assert second["index"] == 2 and second["name"] == "b" and second["valid"] is False
    assert second["findings"] == [{"severity": "error", "field": "spec.maxAttempts", "message": "must be >= 1"}]


def test_a_file_that_cannot_be_read_is_a_usage_error_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = _run(["--no-agents", str(tmp_path / "missing.yaml")])
    assert code == 2 and "missing.yaml: no such file or directory" in capsys.readouterr().err


def test_a_file_that_is_not_yaml_is_invalid_exit_1_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nspec: [unclosed\n")
    code, out = _run(["--no-agents", str(bad)])
    assert code == 1 and f"{bad}:line 3: not valid YAML" in out and "1 file(s) refused" in out


def test_every_admission_error_of_a_document_is_reported_in_one_run() -> None:
    obj = manifest("Bad_Name", spec={"timeout": "0s", "maxAttempts": 0, "deletionPolicy": "Keep", "colour": "red",
                                     "secretRefs": [{"name": "a"}, {"name": "a"}, {"name": "UPPER"}]})
    obj["metadata"]["labels"] = {"example.com/team": "x" * 64}
    fields = [f.field for f in validate_document(obj, "f", 1, Options()).findings]
    assert sorted(fields) == sorted([
        "spec.colour", "metadata.name", "metadata.labels.example.com/team", "spec.timeout", "spec.maxAttempts",
        "spec.deletionPolicy", "spec.secretRefs[1]", "spec.secretRefs[2].name"]), fields


def test_a_missing_template_and_a_bad_field_are_both_reported() -> None:
    obj = manifest(spec={"taskTemplate": None, "pollInterval": "1ms"})
    findings = validate_document(obj, "f", 1, Options()).findings
    assert [f.field for f in findings] == ["spec.taskTemplate", "spec.pollInterval"], findings


def test_every_input_error_is_reported_in_one_run() -> None:
    template = json.loads((FIXTURES / "typed_inputs.template.json").read_text())
    # i and f of the wrong type, nope unknown, doc (a required blob) missing; maybe is Optional
    inputs = {"i": "seven", "f": "x", "s": "x", "b": True, "when": "2026-01-02T03:04:05Z", "wait": "90s",
              "ints": [1, 2], "weights": {"a": 0.5}, "extra": {"k": 1}, "nope": 1}
    result = validate_document(manifest(spec={"taskTemplate": template, "inputs": inputs}), "f", 1, Options())
    assert [f.field for f in result.findings] == [
        "spec.inputs.doc", "spec.inputs.f", "spec.inputs.i", "spec.inputs.nope"], result.findings
    assert "required input missing" in result.findings[0].message


def test_duplicate_keys_are_rejected_naming_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(yaml.safe_dump(manifest("a"), sort_keys=False) .replace(
        "spec:\n", "spec:\n  timeout: 1m\n  maxAttempts: 2\n  timeout: 5m\n"))
    code, out = _run(["--no-agents", str(path)])
    assert code == 1
    assert f"{path}:line 8: not valid YAML" in out and "duplicate key 'timeout' (first on line 6)" in out


def test_manifests_concatenated_without_separator_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(manifest("a"), sort_keys=False) + yaml.safe_dump(manifest("b"), sort_keys=False))
    code, out = _run(["--no-agents", str(path)])
    assert code == 1 and "two manifests concatenated without '---'" in out
    path.write_text(yaml.safe_dump_all([manifest("a"), manifest("b")]))
    assert _run(["--no-agents", str(path)])[0] == 0


def test_yaml_merge_keys_are_not_duplicates() -> None:
    text = yaml.safe_dump(manifest("a")) + "x-defaults: &d {timeout: 1m}\n"
    docs = load_documents("base: &b {a: 1}\nuse: {<<: *b, c: 2}\n", "m")
    assert docs == [{"base": {"a": 1}, "use": {"a": 1, "c": 2}}] and text


def test_the_c_yaml_parser_is_used_when_pyyaml_has_it() -> None:
    assert yaml.__with_libyaml__, "PyYAML without libyaml: the C parser cannot be checked"
    assert issubclass(StrictLoader, yaml.CSafeLoader)


def test_oversize_input_is_refused_after_reading_the_cap_only(tmp_path: Path) -> None:
    class Endless(io.RawIOBase):
        """60 MB of YAML that is never all read: it counts what was asked of it."""

        taken = 0

        def readinto(self, buffer: Any) -> int:
            n = min(len(buffer), 60_000_000 - self.taken)
            buffer[:n] = b"#" * n
            self.taken += n
            return n

        def readable(self) -> bool:
            return True

    stream = Endless()
    with pytest.raises(ManifestError, match="larger than 4096 bytes"):
        read_bounded(io.BufferedReader(stream), "big.yaml", 4096)
    assert stream.taken <= 4096 + io.DEFAULT_BUFFER_SIZE
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump(manifest("a")) + "#" * 5000)
    code, out = _run(["--no-agents", "--max-bytes", "4096", str(big)])
    assert code == 1 and f"{big}: larger than 4096 bytes (--max-bytes)" in out


def test_a_directory_argument_validates_its_manifest_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(manifest("a")))
    (tmp_path / "b.json").write_text(json.dumps(manifest("b", spec={"maxAttempts": 0})))
    (tmp_path / "notes.txt").write_text("not a manifest")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yml").write_text(yaml.safe_dump(manifest("c")))
    code, out = _run(["--no-agents", str(tmp_path)])
    assert code == 1 and "2 AgentTask(s) checked, 1 invalid" in out and f"{tmp_path / 'b.json'}:1: spec.maxAttempts" in out
    code, out = _run(["--no-agents", "-R", str(tmp_path)])
    assert "3 AgentTask(s) checked, 1 invalid" in out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run(["--no-agents", str(empty)])[0] == 2
    assert "no .yaml, .yml, .json files in this directory" in capsys.readouterr().err


def test_several_files_and_stdin_in_one_run(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(manifest("a")))
    code, out = _run(["--no-agents", str(tmp_path / "a.yaml"), "-"], stdin=yaml.safe_dump(manifest("b")))
    assert code == 0 and "2 AgentTask(s) checked, 0 invalid" in out and "<stdin>:1: AgentTask b is valid" in out


def test_list_kind_and_generate_name_are_understood() -> None:
    item = manifest()
    item["metadata"] = {"generateName": "sensor-"}
    code, out = _run(["--no-agents", "-"], stdin=yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [item]}))
    assert code == 0 and "(generated name) is valid" in out


def test_status_in_a_manifest_is_a_warning() -> None:
    obj = {**manifest(), "status": {"phase": "Succeeded"}}
    result = validate_document(obj, "f", 1, Options())
    assert result.valid and result.findings[0].field == "status"


def test_console_script_entry(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(manifest("x", spec={"pollInterval": "100ms"})))
    assert main(["validate", "--no-agents", str(path)]) == 1
    assert "spec.pollInterval: spec.pollInterval must be at least 1s" in capsys.readouterr().out


@settings(max_examples=1_000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(obj=manifests())
def test_the_error_list_starts_with_the_first_error_and_leaves_the_manifest_alone(obj: dict[str, Any]) -> None:
    before = copy.deepcopy(obj)
    try:
        admission_check(obj)
        first = None
    except InvalidField as e:
        first = e
    task, errors = admission_findings(obj)
    assert obj == before
    if first is None:
        assert task is not None and errors == []
    else:
        assert task is None and errors[0].field == first.field and errors[0].message == first.message
        assert len({e.field for e in errors}) == len(errors) <= MAX_FINDINGS
