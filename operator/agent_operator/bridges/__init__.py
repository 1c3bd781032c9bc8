"""Bridges between this operator and the Flyte agent ecosystem.

* :mod:`agent_operator.bridges.flytekit` runs agents/connectors written for flytekit
  in-process (optional extra ``flyte-agent-operator[flytekit]``);
* :mod:`agent_operator.bridges.remote` drives a remote Flyte agent service
  (``pyflyte serve connector``, the flyteagent chart) over gRPC;
* :mod:`agent_operator.bridges.serve` exposes this process's registry *as* a Flyte agent
  service, so a FlytePropeller can run our agents.

The first two produce ordinary :class:`~agent_operator.sdk.AsyncAgentBase` /
:class:`~agent_operator.sdk.SyncAgentBase` objects, so the reconcile core never knows
whether an agent is built in, bridged or remote.  :mod:`agent_operator.bridges.selection`
decides which one serves a task type when several claim it.
"""
