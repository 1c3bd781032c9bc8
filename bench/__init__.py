"""Benchmarks of the operator against a naive kopf baseline and a no-logic ceiling.

``python -m bench.run --quick`` (``make bench``) or ``--full`` (``make bench-full``).
Every figure is also reported as a ratio against the baselines measured in the same run on
the same local control plane, because absolute numbers on a shared machine are noise.
"""
