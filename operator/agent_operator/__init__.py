"""flyte-agent-operator: run Flyte agents as Kubernetes controllers."""

__version__ = "0.1.0"
