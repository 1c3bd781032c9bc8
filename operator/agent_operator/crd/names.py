"""Names of the AgentTask API: group, version, kind, finalizer and annotations.

Kept in one module so that the CRD manifest, the controller and the tests cannot drift
apart on a string.
"""

from __future__ import annotations

GROUP = "flyteagents.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "AgentTask"
LIST_KIND = "AgentTaskList"
PLURAL = "agenttasks"
SINGULAR = "agenttask"
SHORT_NAMES: tuple[str, ...] = ("at",)
CATEGORIES: tuple[str, ...] = ("flyte",)
CRD_NAME = f"{PLURAL}.{GROUP}"

#: blocks deletion until the agent's ``delete`` succeeded (or was not needed)
FINALIZER = f"{GROUP}/agent-cleanup"

#: ``<attempt>``: a ``create`` call for that attempt was about to be made.  Written in the
#: same metadata patch as the finalizer, before the call; never cleared (a later status
#: with ``resourceMeta`` of the same attempt is what proves the create completed), so the
#: marker costs no extra API write.  See core/reconcile.py.
ANNOTATION_CREATE_PENDING = f"{GROUP}/create-pending"

#: set to ``"true"`` by a user to release a stuck deletion without calling the agent
#: (e.g. the remote service is gone for good); the remote job is then orphaned.
ANNOTATION_SKIP_AGENT_DELETE = f"{GROUP}/skip-agent-delete"
