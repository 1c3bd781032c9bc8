"""High availability: leader election on a ``coordination.k8s.io/v1`` Lease."""
