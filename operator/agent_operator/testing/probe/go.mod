module agentoperator.local/probe

go 1.24
