"""Compare the running Python's installed packages with a lock: `python requirements/check.py LOCK`.

Prints each package the lock pins at another version than the one installed, or that only one
side has, and exits 1 if there is any; exits 0 with one line when the environment is the lock.
`make check-lock` runs it for .venv (CI does, right after building .venv from the lock), and
`make test-latest` runs it to show what the newest releases would change.

Standard library only; the project itself (installed editable) is left out.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^]]*\])?==([^\s;\\]+)")
PROJECT = "kninfer"
# What `python -m venv` puts in every venv: compared only where the lock pins it.
TOOLING = {"pip", "setuptools", "wheel"}


def canonical(name: str) -> str:
    """PEP 503's normalized name: `Foo_Bar.baz` and `foo-bar-baz` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock: Path) -> dict[str, str]:
    """Package name to pinned version, from a pip-style lock (`name==version \\` lines)."""
    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def installed() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = canonical(dist.metadata["Name"] or "")
        if name and name != PROJECT:
            found[name] = dist.version
    return found


def differences(pins: dict[str, str], have: dict[str, str]) -> list[str]:
    lines = []
    for name in sorted(set(pins) | (set(have) - (TOOLING - set(pins)))):
        want, got = pins.get(name), have.get(name)
        if want != got:
            lines.append(f"{name}: lock {want or '(absent)'}, installed {got or '(absent)'}")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check.py LOCK", file=sys.stderr)
        return 2
    lock = Path(argv[0])
    pins = locked(lock)
    diff = differences(pins, installed())
    for line in diff:
        print(line)
    if diff:
        print(f"{len(diff)} packages differ from {lock}")
        return 1
    print(f"the environment is {lock}: {len(pins)} packages at the locked versions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
