"""`agent-operator render` turns pyflyte's serialized files into AgentTask manifests."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from agent_operator.cli.main import main
from agent_operator.serialization import load_inputs, load_task_spec_file, load_task_template

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "flytekit"


def _render(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["render", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_taskspec_file_becomes_an_agenttask_with_checked_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    src = FIXTURES / "webhook_post.taskspec.pb"
    rc, out, err = _render(capsys, str(src), "--name", "notify", "--namespace", "team-a",
                           "--input", "s=007", "--input", "item_id=42")
    assert rc == 0, err
    doc = yaml.safe_load(out)
    assert doc["apiVersion"] == "flyteagents.dev/v1alpha1" and doc["kind"] == "AgentTask"
    assert doc["metadata"] == {"name": "notify", "namespace": "team-a"}
    template = load_task_template(doc["spec"]["taskTemplate"])
    assert template == load_task_spec_file(src.read_bytes())
    # "007" stays a string for the string input, "42" becomes the integer the interface wants
    assert doc["spec"]["inputs"] == {"item_id": 42, "s": "007"}
    assert load_inputs(doc["spec"]["inputs"], template).literals["item_id"].scalar.primitive.integer == 42


def test_default_name_comes_from_the_task_name(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _render(capsys, str(FIXTURES / "typed_inputs.taskspec.pb"), "--inputs-file", "/dev/null",
                         "--input", "i=1", "--input", "f=2", "--input", "s=x", "--input", "b=true",
                         "--input", "when=2024-05-01T00:00:00Z", "--input", "wait=1h", "--input", "ints=[1, 2]",
                         "--input", "weights={a: 1}", "--input", "doc=s3://b/k", "--input", "extra={k: [1]}")
    assert rc == 0
    doc = yaml.safe_load(out)
    assert doc["metadata"] == {"name": "typed-inputs"}
    assert doc["spec"]["inputs"] == {
        "b": True, "doc": "s3://b/k", "extra": {"k": [1]}, "f": 2.0, "i": 1, "ints": [1, 2],
        "s": "x", "wait": "3600s", "weights": {"a": 1.0}, "when": "2024-05-01T00:00:00Z",
    }


def test_base64_json_output_and_inputs_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text("path: /data/ready.flag\n")
    rc, out, _ = _render(capsys, str(FIXTURES / "file_sensor.template.pb"), "--base64", "-o", "json",
                         "--inputs-file", str(inputs), "--output-prefix", "s3://bucket/out")
    assert rc == 0
    doc = json.loads(out)
    raw = base64.b64decode(doc["spec"]["taskTemplateBase64"])
    assert load_task_template(raw) == load_task_template((FIXTURES / "file_sensor.template.pb").read_bytes())
    assert doc["spec"]["inputs"] == {"path": "/data/ready.flag"}
    assert doc["spec"]["outputPrefix"] == "s3://bucket/out"


def test_json_template_and_taskspec_json_files_are_accepted(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    template_json = json.loads((FIXTURES / "file_sensor.template.json").read_text())
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"template": template_json}))
    for src in (FIXTURES / "file_sensor.template.json", spec_file):
        rc, out, err = _render(capsys, str(src), "--input", "path=/x")
        assert rc == 0, err
        assert yaml.safe_load(out)["spec"]["taskTemplate"]["type"] == "sensor"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--input", "item_id=many", "--input", "s=x"], "inputs.item_id: expected integer, got str 'many'"),
        (["--input", "s=x"], "inputs.item_id: required input missing (expected integer)"),
        (["--input", "colour=red"], "inputs.colour: not an input of task type 'webhook'"),
        (["--name", "Bad_Name", "--input", "s=x", "--input", "item_id=1"], "--name: 'Bad_Name' is not a valid"),
        (["--namespace", "a.b", "--input", "s=x", "--input", "item_id=1"], "--namespace: 'a.b' is not a valid"),
    ],
)
def test_bad_arguments_exit_1_naming_the_field(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    rc, out, err = _render(capsys, str(FIXTURES / "webhook_post.taskspec.pb"), *argv)
    assert rc == 1 and out == ""
    assert message in err


def test_every_problem_is_reported_in_one_run(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _render(capsys, str(FIXTURES / "webhook_post.taskspec.pb"), "--name", "Bad_Name",
                           "--input", "item_id=many", "--input", "colour=red")
    assert rc == 1 and out == ""
    lines = err.splitlines()
    for message in ("--name: 'Bad_Name' is not a valid", "inputs.item_id: expected integer",
                    "inputs.colour: not an input", "inputs.s: required input missing"):
        assert any(message in line for line in lines), (message, lines)


def test_malformed_input_flag_is_a_usage_error_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["render", str(FIXTURES / "webhook_post.taskspec.pb"), "--input", "novalue"])
    assert exited.value.code == 2 and "'novalue': expected NAME=VALUE" in capsys.readouterr().err


def test_foreign_files_exit_1_and_missing_files_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    junk = tmp_path / "junk.pb"
    junk.write_bytes(b"\xff\xfe\x00garbage")
    rc, _, err = _render(capsys, str(junk))
    assert rc == 1 and "neither a flyteidl.admin.TaskSpec nor a flyteidl.core.TaskTemplate" in err
    rc, _, err = _render(capsys, str(tmp_path / "missing.pb"))
    assert rc == 2 and "missing.pb: cannot read: No such file" in err


def test_an_agenttask_manifest_gets_a_clean_error(capsys: pytest.CaptureFixture[str]) -> None:
    example = ROOT / "examples" / "webhook-get.yaml"
    rc, out, err = _render(capsys, str(example))
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and "this is an AgentTask manifest already" in err
    assert f"agent-operator validate {example}" in err


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `pyflyte package` archive of examples/flyte/demo_tasks.py (three tasks)."""
    work = tmp_path_factory.mktemp("pkg")
    (work / "demo_pkg").mkdir()
    (work / "demo_pkg" / "__init__.py").write_text("")
    shutil.copy(ROOT / "examples" / "flyte" / "demo_tasks.py", work / "demo_pkg" / "demo_tasks.py")
    archive = work / "flyte-package.tgz"
    pyflyte = Path(sys.executable).parent / "pyflyte"
    assert pyflyte.exists(), "pyflyte (flytekit, the dev extra) is needed: make install"
    done = subprocess.run([str(pyflyte), "--pkgs", "demo_pkg", "package", "--output", str(archive), "--force"],
                          cwd=work, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return archive


def test_a_pyflyte_package_archive_renders_the_task_named_by_task(
        capsys: pytest.CaptureFixture[str], package: Path) -> None:
    with tarfile.open(package) as tar:
        assert "1_webhook_status_1.pb" in tar.getnames()
        spec = tar.extractfile("1_webhook_status_1.pb").read()  # type: ignore[union-attr]
    rc, out, err = _render(capsys, str(package), "--task", "webhook_status")
    assert rc == 0, err
    doc = yaml.safe_load(out)
    assert doc["metadata"] == {"name": "webhook-status"}
    assert load_task_template(doc["spec"]["taskTemplate"]) == load_task_spec_file(spec)
    rc, out, err = _render(capsys, str(package), "--task", "webhook_order", "--input", "order_id=7",
                           "--input", "customer=ada")
    assert rc == 0 and yaml.safe_load(out)["spec"]["inputs"] == {"customer": "ada", "order_id": 7}


def test_an_archive_with_several_tasks_needs_task(capsys: pytest.CaptureFixture[str], package: Path) -> None:
    rc, out, err = _render(capsys, str(package))
    assert rc == 2 and out == ""
    assert "holds 3 tasks: pick one with --task (wait_for_file, webhook_order, webhook_status)" in err
    rc, _, err = _render(capsys, str(package), "--task", "nope")
    assert rc == 2 and "--task nope: no task of that name" in err
