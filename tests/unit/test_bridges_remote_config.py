"""Remote agent service configuration: propeller's agent-service section, flags, channel options."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from agent_operator.bridges.remote import RemoteConfigError, build_remote_config, load_remote_config_file, parse_remote_config
from agent_operator.bridges.remote.channel import channel_options
from agent_operator.bridges.remote.cli import add_remote_agent_args
from agent_operator.bridges.selection import AgentSourceSelection
from agent_operator.sdk import TaskCategory

PROPELLER_SECTION = """
plugins:
  agent-service:
    defaultAgent:
      endpoint: dns:///flyteagent.flyte.svc.cluster.local:8000
      insecure: true
      defaultTimeout: 10s
      timeouts:
        CreateTask: 30s
        ExecuteTaskSync: 1m
    agents:
      bigquery:
        endpoint: bigquery-agent:8000
        tls: {caFile: /etc/agent-tls/ca.crt, serverName: bigquery-agent}
        keepalive: {time: 6m, timeout: 20s, permitWithoutCalls: true}
    agentForTaskTypes:
      bigquery_query_job_task: bigquery
      my_sync: {agent: default, version: 2, sync: true}
    pollInterval: 30s
    agentSources: {sensor: remote}
    supportedTaskTypes: [bigquery_query_job_task]   # propeller-only key, ignored
"""


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_remote_agent_args(parser)
    return parser.parse_args(list(argv))


def test_pasted_propeller_section_loads_from_a_configmap_file(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    path.write_text(PROPELLER_SECTION)
    cfg = load_remote_config_file(path)
    default, bq = cfg.deployments["default"], cfg.deployments["bigquery"]
    assert default.insecure and default.endpoint.startswith("dns:///")
    assert default.timeout_for("CreateTask") == 30 and default.timeout_for("GetTask") == 10
    assert default.timeout_for("ExecuteTaskSync") == 60
    assert not bq.insecure and bq.tls.ca_file == "/etc/agent-tls/ca.crt" and bq.tls.server_name == "bigquery-agent"
    assert (bq.keepalive.time_s, bq.keepalive.timeout_s, bq.keepalive.permit_without_calls) == (360, 20, True)
    assert [(r.category, r.deployment, r.sync) for r in cfg.routes] == [
        (TaskCategory("bigquery_query_job_task"), "bigquery", False),
        (TaskCategory("my_sync", 2), "default", True),
    ]
    assert cfg.poll_interval_s == 30
    assert AgentSourceSelection.parse([], cfg.agent_sources).chosen(TaskCategory("sensor")) == "remote"


def test_json_file_is_accepted_too(tmp_path: Path) -> None:
    path = tmp_path / "agents.json"
    path.write_text(json.dumps({"defaultAgent": {"endpoint": "localhost:8000", "insecure": True}}))
    assert load_remote_config_file(path).deployments["default"].endpoint == "localhost:8000"


@pytest.mark.parametrize(
    ("doc", "field", "words"),
    [
        ({"defaultAgent": {"endpoint": "a:1", "insecur": True}}, "defaultAgent", "unknown field(s) ['insecur']"),
        ({"defaultAgent": {"endpoint": "a:1", "defaultTimeout": "soon"}}, "defaultAgent.defaultTimeout", "duration"),
        ({"defaultAgent": {"endpoint": "a:1", "timeouts": {"Create": "1s"}}}, "defaultAgent.timeouts.Create", "unknown call"),
        ({"agents": {"x": {"endpoint": "a:1", "insecure": True, "tls": {"caFile": "c"}}}}, "agents.x.tls", "insecure"),
        ({"agents": {"x": {"endpoint": "a:1", "tls": {"certFile": "c"}}}}, "agents.x.tls", "together"),
        ({"agents": {"x": {}}}, "agents.x.endpoint", "required"),
        ({"agentForTaskTypes": {"t": "nowhere"}}, "agentForTaskTypes.t", "not configured"),
        ({"pollInterval": -1}, "pollInterval", ">= 0"),
        ({"defaultAgent": {"endpoint": "a:1", "keepalive": {"timeout": 0}}}, "defaultAgent.keepalive.timeout", "> 0"),
        ({"endpoints": {}}, "(top level)", "unknown field(s) ['endpoints']"),
    ],
)
def test_bad_config_names_the_field(doc: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(RemoteConfigError) as e:
        parse_remote_config(doc)
    assert e.value.field == field and words in str(e.value)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(RemoteConfigError, match="cannot read"):
        load_remote_config_file(tmp_path / "nope.yaml")


def test_flags_add_deployments_and_routes_on_top_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    path.write_text(PROPELLER_SECTION)
    cfg = build_remote_config(_args(
        "--remote-config", str(path),
        "--remote-endpoint", "local=127.0.0.1:9000", "--remote-insecure",
        "--remote-timeout", "3s", "--remote-keepalive", "0",
        "--remote-task-type", "foo:1=local", "--remote-sync-task-type", "bar=local",
        "--remote-poll-interval", "0",
    ))
    local = cfg.deployments["local"]
    assert local.insecure and local.default_timeout_s == 3 and local.keepalive.time_s == 0
    assert {"default", "bigquery", "local"} == set(cfg.deployments)
    assert (TaskCategory("foo", 1), "local", False) in [(r.category, r.deployment, r.sync) for r in cfg.routes]
    assert (TaskCategory("bar"), "local", True) in [(r.category, r.deployment, r.sync) for r in cfg.routes]
    assert cfg.poll_interval_s == 0


def test_endpoint_flag_without_id_is_the_default_deployment() -> None:
    cfg = build_remote_config(_args("--remote-endpoint", "ipv4:127.0.0.1:1,127.0.0.1:2"))
    assert cfg.deployments["default"].endpoint == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert not cfg.deployments["default"].insecure  # TLS unless asked otherwise


def test_route_flag_to_an_unknown_deployment_is_rejected() -> None:
    with pytest.raises(RemoteConfigError, match="no agent deployment 'x'"):
        build_remote_config(_args("--remote-endpoint", "a:1", "--remote-task-type", "t=x"))


def test_no_flags_means_the_remote_bridge_is_off() -> None:
    assert build_remote_config(_args()).empty


def test_channel_options_carry_round_robin_and_keepalive() -> None:
    cfg = parse_remote_config({"defaultAgent": {"endpoint": "a:1", "keepalive": {"time": "5m", "timeout": "20s"},
                                                "tls": {"serverName": "agents.example"}}})
    opts = dict(channel_options(cfg.deployments["default"]))
    assert json.loads(opts["grpc.service_config"]) == {"loadBalancingConfig": [{"round_robin": {}}]}
    assert opts["grpc.keepalive_time_ms"] == 300_000 and opts["grpc.keepalive_timeout_ms"] == 20_000
    assert opts["grpc.ssl_target_name_override"] == "agents.example"
    off = parse_remote_config({"defaultAgent": {"endpoint": "a:1", "keepalive": {"time": 0}}})
    assert "grpc.keepalive_time_ms" not in dict(channel_options(off.deployments["default"]))
