"""The AgentTask API model: typed spec/status, CRD generation, phases and names."""
