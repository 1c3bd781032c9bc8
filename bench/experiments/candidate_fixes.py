# mypy: ignore-errors
"""Candidate operator fixes applied by monkeypatching, for before/after benchmark runs.

    BENCH_OPERATOR_MAIN=bench/experiments/candidate_fixes.py \
    BENCH_FIXES=managedfields,diffbase,events,apipool \
    python -m bench.run --contenders operator --scenarios burst,steady

Each name in BENCH_FIXES patches one cause found by profiling (see README, Benchmarks); an
empty BENCH_FIXES runs the operator unchanged through the same wrapper (the "before").
These are experiments, not the fixes themselves: the real change belongs in controller/ or core/.
"""
import functools, os, sys, typing
fixes = set(filter(None, os.environ.get("BENCH_FIXES", "").split(",")))
from agent_operator.controller import operator as op
if "managedfields" in fixes:
    orig_on_event, orig_remember = op.Controller.on_event, op.Controller.remember
    def strip(body):
        meta = body.get("metadata")
        if isinstance(meta, dict) and "managedFields" in meta:
            meta = dict(meta); meta.pop("managedFields"); body = dict(body); body["metadata"] = meta
        return body
    op.Controller.on_event = lambda self, t, body: orig_on_event(self, t, strip(body))
    op.Controller.remember = lambda self, body: orig_remember(self, strip(body))
if "typehints" in fixes:
    orig_hints = typing.get_type_hints
    cache = {}
    def cached(obj, globalns=None, localns=None, include_extras=False):
        if globalns is None and localns is None and isinstance(obj, type):
            key = (obj, include_extras)
            if key not in cache:
                cache[key] = orig_hints(obj, include_extras=include_extras)
            return cache[key]
        return orig_hints(obj, globalns, localns, include_extras)
    typing.get_type_hints = cached
if "diffbase" in fixes:
    import kopf
    class NoDiffBase(kopf.DiffBaseStorage):
        def build(self, *, body, extra_fields=None): return kopf.BodyEssence()
        def fetch(self, *, body): return None
        def store(self, *, body, patch, essence): pass
    import inspect
    orig_settings = inspect.getattr_static(op.Controller, "kopf_settings")
    if isinstance(orig_settings, staticmethod):
        f = orig_settings.__func__
        def settings():
            s = f(); s.persistence.diffbase_storage = NoDiffBase(); return s
        op.Controller.kopf_settings = staticmethod(settings)
    else:
        def settings(self):
            s = orig_settings(self); s.persistence.diffbase_storage = NoDiffBase(); return s
        op.Controller.kopf_settings = settings
if "events" in fixes:
    from agent_operator.controller import backend
    orig_emit = backend.KubeBackend.emit
    async def emit(self, view, event):
        if event.type == "Normal":
            return
        await orig_emit(self, view, event)
    backend.KubeBackend.emit = emit
if "apipool" in fixes:
    from agent_operator.controller import api as capi
    orig_init = capi.KubeApi.__init__
    def init(self, api_client, *, workers=16, **kw):
        orig_init(self, api_client, workers=64, **kw)
    capi.KubeApi.__init__ = init
    orig_new = capi.new_api_client
    import agent_operator.cli.run as crun
    def new_client(kubeconfig, pool_size=32):
        return orig_new(kubeconfig, pool_size=64)
    capi.new_api_client = new_client
    if hasattr(crun, "new_api_client"):
        crun.new_api_client = new_client
from agent_operator.cli.main import main
sys.exit(main(sys.argv[1:]))
