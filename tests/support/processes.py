"""Code run in a fresh interpreter: what a module imports, and what a process that loads a model
has in `sys.modules`, can only be seen from a process that imported nothing before it."""

from __future__ import annotations

import subprocess
import sys

from tests.support.paths import ROOT


def fresh_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -c CODE ARGS...` from the checkout; its output and status (not checked)."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
