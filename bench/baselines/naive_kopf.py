"""The naive kopf baseline: the way most kopf operators for external jobs are written.

One ``on.create`` handler creates the job, then polls it by raising
``kopf.TemporaryError(delay=poll)`` until the job is terminal; job state travels in
status through the handler's ``patch`` and its return value.  Everything else is kopf's
defaults (progress and diff-base annotations, per-object workers, Events for handler
outcomes) — which is exactly what it costs.  Run with::

    kopf run --standalone --namespace NS bench/baselines/naive_kopf.py
"""

from __future__ import annotations

from typing import Any

import kopf

from agent_operator.sdk import invoke
from agent_operator.sdk.resource import is_terminal_phase
from bench.baselines.common import phase_word, prepare


@kopf.on.create("flyteagents.dev", "v1alpha1", "agenttasks")
async def run_task(spec: kopf.Spec, status: kopf.Status, patch: kopf.Patch, **_: Any) -> dict[str, Any]:
    """Create the job once, then poll it by retrying this handler until it is terminal."""
    agent, template, poll = prepare(spec)
    encoded = status.get("resourceMeta")
    if encoded:
        meta = agent.metadata_type.decode(str(encoded).encode())
    else:
        meta = await invoke(agent.create, task_template=template, output_prefix=spec.get("outputPrefix", ""))
        encoded = meta.encode().decode()
        patch.status["resourceMeta"] = encoded
        patch.status["phase"] = "Running"
    resource = await invoke(agent.get, resource_meta=meta)
    if not is_terminal_phase(resource.phase):
        raise kopf.TemporaryError("the job is still running", delay=poll)
    patch.status["phase"] = phase_word(resource.phase)
    return {"message": resource.message or ""}
