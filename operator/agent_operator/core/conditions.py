"""kstatus conditions in ``metav1.Condition`` shape.

* in progress: ``Reconciling=True``, ``Ready=False``, ``Succeeded=Unknown``
* succeeded:   ``Ready=True``, ``Succeeded=True``
* failed / timed out / aborted: ``Stalled=True`` (Argo CD and Flux stop waiting at once),
  ``Ready=False``, ``Succeeded=False``
* stuck (transient errors beyond the budget, tampered resourceMeta): ``Stalled=True`` while
  the phase stays where it was

``Reconciling`` and ``Stalled`` are kstatus's abnormal-true conditions: present only while
true, as Flux's controllers do (kstatus reads an absent one as false). Every field of the
status costs the API server on every write of the object and on every watch event it
sends (bench: an update of an AgentTask carrying the two false conditions cost about 1 ms
more API-server CPU than one without; python -m bench.api_cost).

``lastTransitionTime`` changes only when a condition's ``status`` changes, so rewriting the
same state costs nothing and status patches stay idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agent_operator.core.clock import format_time
from agent_operator.crd.phases import ConditionType, Phase
from agent_operator.crd.status import Condition

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"
ORDER = (ConditionType.READY, ConditionType.SUCCEEDED, ConditionType.RECONCILING, ConditionType.STALLED)


def desired(phase: Phase, reason: str, message: str, *, stalled: bool = False,
            stalled_reason: str = "", stalled_message: str = "") -> dict[ConditionType, tuple[str, str, str]]:
    """(status, reason, message) per condition type for a task in ``phase``."""
    out: dict[ConditionType, tuple[str, str, str]] = {}
    if phase == Phase.SUCCEEDED:
        out[ConditionType.READY] = (TRUE, reason, message)
        out[ConditionType.SUCCEEDED] = (TRUE, reason, message)
    elif phase.terminal:
        out[ConditionType.READY] = (FALSE, reason, message)
        out[ConditionType.SUCCEEDED] = (FALSE, reason, message)
        out[ConditionType.STALLED] = (TRUE, reason, message)
    else:
        out[ConditionType.READY] = (FALSE, reason, message)
        out[ConditionType.SUCCEEDED] = (UNKNOWN, reason, message)
        if stalled:
            out[ConditionType.STALLED] = (TRUE, stalled_reason or reason, stalled_message or message)
        else:
            out[ConditionType.RECONCILING] = (TRUE, reason, message)
    return out


def build(previous: Sequence[Condition], wanted: Mapping[ConditionType, tuple[str, str, str]],
          *, generation: int, now: float) -> tuple[Condition, ...]:
    """The conditions, keeping ``lastTransitionTime`` of conditions whose status did not change."""
    old = {c.type: c for c in previous}
    out: list[Condition] = []
    for ctype in ORDER:
        if ctype not in wanted:
            continue
        status, reason, message = wanted[ctype]
        prev = old.get(ctype.value)
        ltt = prev.last_transition_time if prev is not None and prev.status == status else None
        out.append(Condition(type=ctype.value, status=status, reason=reason or "Unknown", message=message,
                             last_transition_time=ltt or format_time(now), observed_generation=generation))
    return tuple(out)
