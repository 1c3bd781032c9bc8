"""The contenders, each as the command line of a separate process.

* ``operator``: ``agent-operator run`` (the command line ``testing.operator_proc`` builds,
  so the benchmark runs the operator exactly as the tests and users do), with the bench
  agents loaded by ``--agent``.
* ``naive-kopf``: ``kopf run --standalone`` over ``bench/baselines/naive_kopf.py``.
* ``ceiling``: ``python -m bench.baselines.ceiling``.
* ``kopf-floor``: ``python -m bench.baselines.kopf_floor``: the ceiling's work with its watch
  fed through the operator's kopf registry and settings (what kopf alone costs).

All watch one namespace and use the same agent concurrency.  ``BENCH_OPERATOR_MAIN=script.py``
runs the operator through a script (which must end by calling ``agent_operator.cli.main.main``)
for before/after measurements of a candidate fix without touching the operator's code.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent_operator.testing.operator_proc import OperatorProcess

from .harness import ContenderProcess, python

OPERATOR = "operator"
NAIVE = "naive-kopf"
CEILING = "ceiling"
FLOOR = "kopf-floor"
ALL = (OPERATOR, NAIVE, CEILING, FLOOR)
AGENT_SPECS = ("bench.agents:InstantAgent", "bench.agents:LatencyAgent")
BASELINES = Path(__file__).resolve().parent / "baselines"


def argv(contender: str, kubeconfig: Path, namespace: str, concurrency: int,
         operator_args: list[str] | None = None) -> list[str]:
    """The command line that runs ``contender`` on ``namespace``."""
    if contender == OPERATOR:
        op = OperatorProcess(kubeconfig, namespaces=[namespace], agents=AGENT_SPECS, health_port=0,
                             extra_args=["--max-concurrency", str(concurrency), "--per-agent-concurrency",
                                         str(concurrency), *(operator_args or [])])
        argv = op.argv()
        main_script = os.environ.get("BENCH_OPERATOR_MAIN")
        if main_script:  # A/B experiments: a script that patches the operator, then runs its main(argv)
            argv[1:3] = [main_script]
        return argv
    if contender == NAIVE:
        return [python(), "-m", "kopf", "run", "--standalone", "--namespace", namespace,
                str(BASELINES / "naive_kopf.py")]
    if contender in (CEILING, FLOOR):
        module = "bench.baselines.ceiling" if contender == CEILING else "bench.baselines.kopf_floor"
        return [python(), "-m", module, "--namespace", namespace,
                "--concurrency", str(concurrency), "--kubeconfig", str(kubeconfig)]
    raise ValueError(f"unknown contender {contender!r} (one of {', '.join(ALL)})")


def process(contender: str, kubeconfig: Path, namespace: str, concurrency: int, workdir: Path,
            tag: str, operator_args: list[str] | None = None, profile: bool = False) -> ContenderProcess:
    """A not-yet-started contender process logging into ``workdir`` under ``<contender>-<tag>``."""
    return ContenderProcess(
        name=f"{contender}-{tag}",
        argv=argv(contender, kubeconfig, namespace, concurrency, operator_args),
        env={"KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"},
        workdir=workdir,
        profile=profile,
    )
