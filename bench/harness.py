"""The one bench harness: ports, CPU pinning, readiness, stopping. Every benchmark (bench.run's
peer comparison, bench.cold, bench.drain, bench.events_bench, bench/batching) starts and stops
its servers through these, so they are measured the same way.

Servers talk to 127.0.0.1 only, and every process a benchmark starts is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

SERVER_CPU = "0"
LOADGEN_CPU = "1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpu: str | int | None, argv: list[str]) -> list[str]:
    """`argv` run on one CPU (`taskset`), so a load generator does not steal the server's core;
    unchanged where taskset is missing, the machine has one CPU, or `cpu` is None."""
    if cpu is None or not shutil.which("taskset") or os.cpu_count() == 1:
        return argv
    return ["taskset", "-c", str(cpu), *argv]


def wait_ready(
    url: str,
    process: subprocess.Popen[bytes],
    timeout: float = 120,
    path: str = "/v2/health/ready",
    log: Path | None = None,
) -> None:
    """Until GET `url + path` answers 200; raises if the server exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log is not None else ""
            raise RuntimeError(f"{url}: server exited with {process.returncode}\n{tail}")
        try:
            with urllib.request.urlopen(f"{url}{path}", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url}{path} not ready after {timeout:g} s")


def stop(process: subprocess.Popen[bytes], group: bool = False, grace_s: float = 30) -> int:
    """SIGTERM the server (its whole process group when it was started with
    start_new_session=True), wait `grace_s`, then SIGKILL; its exit status."""
    if process.poll() is None:
        try:
            if group:
                os.killpg(process.pid, signal.SIGTERM)
            else:
                process.send_signal(signal.SIGTERM)
            process.wait(grace_s)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            if group:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
            process.wait(5)
    return process.returncode


def git_commit(tree: Path, *watched: str) -> str:
    """The tree's short commit; " with changes" added when any of the `watched` paths have
    uncommitted changes (a benchmark of a working tree, not of that commit)."""
    done = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = (
        watched
        and subprocess.run(
            ["git", "-C", str(tree), "status", "--porcelain", "--", *watched],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    )
    return (done.stdout.strip() or "unknown") + (" with changes" if dirty else "")


def medians(samples: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    """Each label's median per metric, over the rounds of an A/B bench (bench.ab, bench.drift,
    bench.tracing)."""
    return {
        label: {metric: round(statistics.median(values), 4) for metric, values in by_metric.items()}
        for label, by_metric in samples.items()
    }


def write_report(
    out: Path, name: str, doc: dict[str, Any], markdown: Callable[[dict[str, Any], Path], None]
) -> None:
    """`out`/NAME.json (the run) and `out`/NAME.md (its report, written by `markdown`), and the
    report printed."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    markdown(doc, out / f"{name}.md")
    print((out / f"{name}.md").read_text())
