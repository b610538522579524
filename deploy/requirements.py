"""Print kninfer's requirements (pyproject.toml's dependencies and the named extras), one a line.

The Dockerfile installs these before it copies kninfer's code, so the dependency layer (GBs with
torch) stays cached and unchanged while only kninfer's own files change: a rebuild after a code
change takes seconds, and a node that holds the previous image pulls only kninfer's layer.

    python3 requirements.py pyproject.toml pytorch,storage > requirements.txt

Standard library only: it runs in the base image before anything is installed.
"""

from __future__ import annotations

import sys
import tomllib


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    with open(pyproject, "rb") as file:
        project = tomllib.load(file)["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        raise SystemExit(f"unknown extras {unknown}; {pyproject} has {sorted(optional)}")
    return [*project["dependencies"], *(req for extra in extras for req in optional[extra])]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: requirements.py PYPROJECT EXTRA[,EXTRA...]")
    print("\n".join(requirements(sys.argv[1], [e for e in sys.argv[2].split(",") if e])))
