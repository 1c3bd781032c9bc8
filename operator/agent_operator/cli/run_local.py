"""`agent-operator run-local agenttask.yaml`: run AgentTasks without a cluster.

The same reconcile core and runner as the operator, with an in-memory backend: the spec
is checked as the API server would, the agent is driven to a terminal phase, and every
change (phase, message, log links) is printed as it happens, then the outputs.  Ctrl-C
stops the job the way ``kubectl delete`` would (the agent's ``delete``, unless the task
already finished or says ``deletionPolicy: Orphan``); a second Ctrl-C exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import yaml

from agent_operator.crd import names
from agent_operator.crd.fields import InvalidField
from agent_operator.crd.resource import load_metadata

EXIT_INTERRUPTED = 130


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``run-local`` sub-command."""
    from agent_operator.cli import agent_sources
    from agent_operator.cli.run import _seconds

    p = sub.add_parser("run-local", help="run AgentTask manifests in this process, without a cluster")
    p.add_argument("manifest", help="AgentTask YAML/JSON file ('-' for stdin); several documents run together")
    agent_sources.add_arguments(p)
    p.add_argument("--secret-dir", metavar="DIR",
                   help="spec.secretRefs are read from DIR/<secret name>/<key> files (as Kubernetes mounts them)")
    p.add_argument("--default-poll-interval", type=_seconds, default=5.0, metavar="S",
                   help="poll interval when neither the AgentTask nor the agent sets one (default 5s)")
    p.add_argument("--call-timeout", type=_seconds, default=60.0, metavar="S")
    p.add_argument("--do-timeout", type=_seconds, default=300.0, metavar="S")
    p.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text",
                   help="final report format (text also prints changes as they happen)")
    p.set_defaults(func=run)


class PrintingBackend:
    """Keeps the object in memory and prints what a user watching ``kubectl get -w`` would see."""

    def __init__(self, out: TextIO, verbose: bool) -> None:
        self.out = out
        self.verbose = verbose
        #: the newest version of each object (by uid), also when an advance was cancelled
        self.latest: dict[str, Any] = {}

    def _say(self, view: Any, text: str) -> None:
        if self.verbose:
            print(f"[{view.name}] {text}", file=self.out, flush=True)

    async def patch_metadata(self, view: Any, change: Any) -> Any:
        meta = view.metadata
        fin = meta.finalizers + ((names.FINALIZER,) if change.add_finalizer and not meta.has_finalizer else ())
        ann = dict(meta.annotations)
        if change.create_pending is not None:
            ann[names.ANNOTATION_CREATE_PENDING] = str(change.create_pending)
        view = dataclasses.replace(view, metadata=dataclasses.replace(meta, finalizers=fin, annotations=ann))
        self.latest[view.uid] = view
        return view

    async def write_status(self, view: Any, status: Any) -> Any:
        old = view.status
        if (old.phase, old.message) != (status.phase, status.message):
            attempt = f" (attempt {status.attempt})" if (status.attempt or 1) > 1 else ""
            self._say(view, f"{status.phase}{attempt}: {status.message or ''}")
        if status.log_links != old.log_links:
            for link in status.log_links:
                self._say(view, f"log link {link.name}: {link.uri}")
        if status.custom_info != old.custom_info and status.custom_info:
            self._say(view, f"custom info: {json.dumps(status.custom_info, sort_keys=True)}")
        view = dataclasses.replace(view, status=status)
        self.latest[view.uid] = view
        return view

    async def release(self, view: Any) -> None:
        self._say(view, "released")

    async def emit(self, view: Any, event: Any) -> None:
        if event.type == "Warning" or event.reason in ("CreateResumed", "AgentDeleted", "Orphaned"):
            self._say(view, f"{event.type} {event.reason}: {event.message}")

    async def store_outputs(self, view: Any, ref: str, data: bytes) -> None:
        from agent_operator.controller.backend import store_outputs

        await store_outputs(ref, data)
        self._say(view, f"outputs stored at {ref}")


def load_manifests(path: str) -> list[dict[str, Any]]:
    """AgentTask documents from a file (or stdin); other kinds are an error."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    docs = [d for d in yaml.safe_load_all(text) if d]
    if not docs:
        raise ValueError(f"{path}: no documents")
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict) or doc.get("kind") != names.KIND:
            raise ValueError(f"{path}: document {i + 1} is not an {names.KIND}")
        if not (doc.get("metadata") or {}).get("name"):
            raise ValueError(f"{path}: document {i + 1} has no metadata.name")
        try:
            load_metadata(doc.get("metadata"))
        except InvalidField as e:
            raise ValueError(f"{path}: document {i + 1}: {e}") from None
    return docs


def _view(doc: Mapping[str, Any]) -> Any:
    from agent_operator.core.clock import format_time
    from agent_operator.crd.resource import load_stored_agent_task

    meta = dict(doc.get("metadata") or {})
    meta.setdefault("namespace", "default")
    meta["uid"] = meta.get("uid") or str(uuid.uuid4())
    meta["creationTimestamp"] = format_time(time.time())
    return load_stored_agent_task({**doc, "metadata": meta, "status": {}})


def _read_secrets(secret_dir: str | None, view: Any) -> dict[str, dict[str, str]]:
    from agent_operator.sdk import TransientAgentError

    out: dict[str, dict[str, str]] = {}
    for ref in view.spec.secret_refs if view.spec is not None else ():
        name = ref.name
        folder = Path(secret_dir or ".") / name
        if not secret_dir or not folder.is_dir():
            raise TransientAgentError(f"Secret {name!r} (spec.secretRefs) not found: pass --secret-dir DIR with DIR/{name}/<key> files")
        out[name] = {f.name: f.read_text() for f in sorted(folder.iterdir()) if f.is_file()}
    return out


async def _drive(doc: Mapping[str, Any], args: argparse.Namespace, backend: PrintingBackend,
                 interrupted: asyncio.Event) -> dict[str, Any]:
    from agent_operator.core.clock import format_time
    from agent_operator.core.context import ContextFactory, Settings
    from agent_operator.core.runner import CallLimits, Progress, advance
    from agent_operator.core.signing import Signer, new_key
    from agent_operator.crd.resource import AgentTask

    make_context = ContextFactory(Signer(new_key()), Settings(default_poll_interval=args.default_poll_interval))
    limits = CallLimits(call_timeout=args.call_timeout, do_timeout=args.do_timeout)

    async def secrets(view: AgentTask) -> dict[str, dict[str, str]]:
        return _read_secrets(args.secret_dir, view)

    view: AgentTask = _view(doc)
    progress = Progress()
    while True:
        step = asyncio.ensure_future(advance(view, make_context, backend, progress, secrets=secrets, limits=limits))
        stop = asyncio.ensure_future(interrupted.wait())
        await asyncio.wait({step, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not step.done():
            step.cancel()
            await asyncio.gather(step, return_exceptions=True)
            view = backend.latest.get(view.uid, view)
        else:
            outcome = step.result()
            view = outcome.view
            if interrupted.is_set() and not view.deleting:
                pass
            elif outcome.action is None:
                return view.status.to_dict()
            else:
                try:
                    await asyncio.wait_for(interrupted.wait(), timeout=max(outcome.action.delay, 0.0))
                except asyncio.TimeoutError:
                    pass
        if interrupted.is_set() and not view.deleting:
            backend._say(view, "interrupted: deleting (the agent's delete unless finished or Orphan)")
            view = dataclasses.replace(view, metadata=dataclasses.replace(
                view.metadata, deletion_timestamp=format_time(time.time())))
            interrupted = asyncio.Event()  # a fresh flag: the deletion itself runs to the end


def _report(statuses: dict[str, dict[str, Any]], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        print(json.dumps(statuses, indent=2, sort_keys=True), file=out)
    elif fmt == "yaml":
        print(yaml.safe_dump(statuses, sort_keys=True), end="", file=out)
    else:
        for name, status in statuses.items():
            print(f"{name}: {status.get('phase', 'Pending')} ({status.get('reason', '')})", file=out)
            if status.get("outputs"):
                print(yaml.safe_dump({"outputs": status["outputs"]}, sort_keys=True), end="", file=out)
            if status.get("outputsRef"):
                print(f"outputsRef: {status['outputsRef']}", file=out)


def run(args: argparse.Namespace) -> int:
    """Run every AgentTask in the manifest; exit 0 only if all succeeded."""
    import logging

    from agent_operator.cli import agent_sources
    from agent_operator.sdk import AgentLoadError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        docs = load_manifests(args.manifest)
        agent_sources.load(args)
    except (AgentLoadError, ValueError, OSError, yaml.YAMLError) as e:
        print(f"agent-operator run-local: {e}", file=sys.stderr)
        return 1
    backend = PrintingBackend(sys.stderr if args.output != "text" else sys.stdout, verbose=True)
    state = {"interrupts": 0}

    async def main() -> dict[str, dict[str, Any]]:
        interrupted = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            state["interrupts"] += 1
            if state["interrupts"] > 1:
                raise SystemExit(EXIT_INTERRUPTED)
            interrupted.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        results = await asyncio.gather(*(_drive(d, args, backend, interrupted) for d in docs))
        return {str(d["metadata"]["name"]): r for d, r in zip(docs, results)}

    try:
        statuses = asyncio.run(main())
    finally:
        agent_sources.close()
    _report(statuses, args.output, sys.stdout)
    if state["interrupts"]:
        return EXIT_INTERRUPTED
    return 0 if all(s.get("phase") == "Succeeded" for s in statuses.values()) else 1
