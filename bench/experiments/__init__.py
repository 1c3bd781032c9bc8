"""Before/after experiments (see candidate_fixes.py)."""
