"""Operator observability: Prometheus metrics, JSON logs with task identity, health endpoints.

Nothing here imports kopf or the reconcile core: the controller calls these functions, so
`run`, `run-local` and tests share one set of metric names.
"""
