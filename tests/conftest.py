"""Test configuration: the real local control plane fixtures come from the project's plugin."""

pytest_plugins = ["agent_operator.testing.pytest_plugin"]
