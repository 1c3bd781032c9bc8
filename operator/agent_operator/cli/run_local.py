"""`agent-operator run-local FILE|DIR|- ...`: run AgentTasks without a cluster.

The same reconcile core and runner as the operator, with an in-memory backend: every
manifest is checked first as the API server would (every problem listed, nothing runs
if one is found), each agent is driven to a terminal phase, and every change (phase,
message, log links) is printed as it happens, then the outputs.  Ctrl-C stops the jobs
the way `kubectl delete` would (the agent's delete, unless the task already finished or
says deletionPolicy: Orphan); a second Ctrl-C exits at once.

Exit codes: 0 every task Succeeded, 1 a manifest is invalid or a task did not succeed,
2 usage (a bad flag, a file that cannot be read, an agent that cannot be loaded),
130 interrupted.
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
from typing import Any, BinaryIO, TextIO

import yaml

from agent_operator.cli import manifests
from agent_operator.cli.manifests import EXIT_INVALID, EXIT_OK, EXIT_USAGE, ManifestError, UsageError
from agent_operator.crd import names

EXIT_INTERRUPTED = 130


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``run-local`` sub-command."""
    from agent_operator.cli import agent_sources
    from agent_operator.cli.run import _seconds

    p = sub.add_parser("run-local", help="run AgentTask manifests in this process, without a cluster",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifests", nargs="+", metavar="FILE",
                   help="AgentTask YAML/JSON files or directories of them ('-' for stdin); all their tasks run together")
    p.add_argument("-R", "--recursive", action="store_true", help="also read the subdirectories of a directory")
    p.add_argument("--max-bytes", type=int, default=manifests.DEFAULT_MAX_BYTES, metavar="N",
                   help=f"refuse a file larger than N bytes before parsing it (default {manifests.DEFAULT_MAX_BYTES})")
    agent_sources.add_arguments(p)
    p.add_argument("--secret-dir", metavar="DIR",
                   help="spec.secretRefs are read from DIR/<secret name>/<key> files (as Kubernetes mounts them)")
    p.add_argument("--default-poll-interval", type=_seconds, default=5.0, metavar="S",
                   help="poll interval when neither the AgentTask nor the agent sets one (default 5s)")
    p.add_argument("--call-timeout", type=_seconds, default=60.0, metavar="S",
                   help="bound on one create/get/delete call (default 60s)")
    p.add_argument("--do-timeout", type=_seconds, default=300.0, metavar="S",
                   help="bound on one sync do call (default 300s)")
    p.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text",
                   help="final report format (text also prints changes as they happen)")
    p.set_defaults(func=run)


class PrintingBackend:
    """Keeps the object in memory and prints what a user watching ``kubectl get -w`` would see."""

    def __init__(self, out: TextIO, verbose: bool) -> None:
        self.out = out
        self.verbose = verbose

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


class InvalidManifests(Exception):
    """Documents that an API server would refuse: one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_manifests(paths: list[str], recursive: bool = False, max_bytes: int = manifests.DEFAULT_MAX_BYTES,
                   stdin: BinaryIO | None = None) -> list[dict[str, Any]]:
    """The AgentTasks of every file, each checked as the API server would check it on create.

    Every problem of every document is collected first (:class:`InvalidManifests`); a file
    that cannot be read is a :class:`~agent_operator.cli.manifests.UsageError`.
    """
    from agent_operator.cli.validate import admission_findings

    docs: list[dict[str, Any]] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    for source in manifests.expand(paths, recursive):
        try:
            text = manifests.read_source(source, stdin if stdin is not None else sys.stdin.buffer, max_bytes)
            found = manifests.load_documents(text, source.label)
        except ManifestError as e:
            problems.append(str(e))
            continue
        if not found:
            problems.append(f"{source.label}: no documents")
        for i, doc in enumerate(found, start=1):
            where = f"{source.label}:{i}"
            if not isinstance(doc, dict) or doc.get("kind") != names.KIND:
                kind = doc.get("kind") if isinstance(doc, dict) else type(doc).__name__
                problems.append(f"{where}: not an {names.KIND} ({kind}); run-local runs AgentTasks only")
                continue
            _, errors = admission_findings(doc)
            problems.extend(f"{where}: {e.field}: {e.message}" for e in errors)
            if errors:
                continue
            meta = doc.get("metadata") or {}
            key = str(meta.get("name") or "")  # the report is keyed by name
            if not key:
                problems.append(f"{where}: metadata.name: required (run-local cannot generate names)")
            elif key in seen:
                problems.append(f"{where}: metadata.name: {key!r} is also used at {seen[key]}")
            else:
                seen[key] = where
                docs.append(doc)
    if problems:
        raise InvalidManifests(problems)
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
            # let the agent call in flight return (bounded by --call-timeout/--do-timeout; a
            # second Ctrl-C exits at once): a create cancelled here would leave a job that the
            # deletion below cannot know about
            backend._say(view, "interrupted: waiting for the agent call in flight")
            await asyncio.wait({step})
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
        docs = load_manifests(args.manifests, args.recursive, args.max_bytes)
    except UsageError as e:
        return manifests.fail("run-local", [e], EXIT_USAGE)
    except InvalidManifests as e:
        return manifests.fail("run-local", e.problems, EXIT_INVALID)
    try:
        agent_sources.load(args)
    except AgentLoadError as e:
        return manifests.fail("run-local", [e], EXIT_USAGE)
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
    return EXIT_OK if all(s.get("phase") == "Succeeded" for s in statuses.values()) else EXIT_INVALID
