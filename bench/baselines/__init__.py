"""The two baselines every figure of the operator is compared with (see bench/README in the project README)."""
