"""Agents served to Flyte 2 clients in tests/unit/test_serve_flyte2.py (loaded with --agent)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_operator.sdk import AsyncAgentBase, Resource, ResourceMeta, SyncAgentBase, TaskExecution
from agent_operator.serialization import literal_map_to_plain


@dataclass
class VaultMeta(ResourceMeta):
    job_dir: str
    job_id: str
    x: int


class VaultJobAgent(AsyncAgentBase):
    """Doubles input ``x``; Running until ``<job>.done`` exists in ``custom.job_dir``.

    Outputs say which secrets it was handed (names and a digest of the token, never the
    token), so a test sees the Connection arrive; delete writes ``<job>.deleted``.
    """

    name = "Vault Job Agent"

    def __init__(self) -> None:
        super().__init__(task_type_name="vault_job", metadata_type=VaultMeta)

    async def create(self, task_template: Any, output_prefix: str, inputs: Any = None,
                     task_execution_metadata: Any = None, **kwargs: Any) -> VaultMeta:
        job_dir = Path(task_template.custom["job_dir"])
        job_id = task_execution_metadata.task_execution_id.task_id.name if task_execution_metadata else "anon"
        secrets = kwargs.get("secrets") or {}
        token = secrets.get("connection", {}).get("api_key", "")
        tmp = job_dir / f".{job_id}.json.tmp"
        tmp.write_text(json.dumps({
            "secret_names": sorted(secrets), "keys": sorted(secrets.get("connection", {})),
            "token_sha256": hashlib.sha256(token.encode()).hexdigest(), "output_prefix": output_prefix}))
        os.replace(tmp, job_dir / f"{job_id}.json")  # whole, for tests reading it meanwhile
        return VaultMeta(job_dir=str(job_dir), job_id=job_id, x=int(literal_map_to_plain(inputs)["x"]))

    async def get(self, resource_meta: VaultMeta, **kwargs: Any) -> Resource:
        if not (Path(resource_meta.job_dir) / f"{resource_meta.job_id}.done").exists():
            return Resource(phase=TaskExecution.RUNNING, message="running")
        return Resource(phase=TaskExecution.SUCCEEDED, message="done", outputs={"y": 2 * resource_meta.x},
                        custom_info={"job": resource_meta.job_id})

    async def delete(self, resource_meta: VaultMeta, **kwargs: Any) -> None:
        (Path(resource_meta.job_dir) / f"{resource_meta.job_id}.deleted").write_text("deleted")


class EchoSyncAgent(SyncAgentBase):
    """A sync agent: served to Flyte 1 only (Flyte 2 has no sync connector service)."""

    name = "Echo Sync Agent"

    def __init__(self) -> None:
        super().__init__(task_type_name="echo_sync")

    def do(self, task_template: Any, output_prefix: str, inputs: Any = None, **kwargs: Any) -> Resource:
        return Resource(phase=TaskExecution.SUCCEEDED, outputs={"echo": "ok"})
