"""Print the lowest versions pyproject.toml allows, one ``name==version`` a line.

`make test-floors` installs exactly these in a venv of its own and runs the unit tests
there, so a floor that is too low (an API the code calls that the floor release lacks)
fails a test instead of a user's install.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def floor_pins(lines: list[str]) -> list[str]:
    """``name==floor`` for every requirement with a ``>=`` floor (others are left as they are)."""
    pins = []
    for line in lines:
        req = Requirement(line)
        floors = [s.version for s in req.specifier if s.operator == ">="]
        pins.append(f"{req.name}=={floors[0]}" if len(floors) == 1 else str(req))
    return pins


def main() -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    print("\n".join(floor_pins(project["dependencies"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
