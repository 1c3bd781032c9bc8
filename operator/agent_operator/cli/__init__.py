"""Command line interface: `agent-operator <command>`."""
