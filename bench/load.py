"""Measuring one server: cold start, throughput/latency under wrk, peak RSS.

The server runs pinned to one core and wrk to the other (`taskset`), so the load generator does
not steal the server's CPU; the figures are per server core.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench import harness
from bench.harness import LOADGEN_CPU, SERVER_CPU, free_port, pinned
from bench.servers import BENCH, ServerSpec, child_env


def ensure_wrk() -> str:
    """Path of wrk; installs Debian's package when missing and we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=False, stdout=subprocess.DEVNULL)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL
        )
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit("wrk is needed: apt-get install wrk (Debian/Ubuntu package)")


@dataclass
class Running:
    spec: ServerSpec
    process: subprocess.Popen[bytes]
    http_port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start(spec: ServerSpec, log_dir: Path) -> Running:
    http, grpc, metrics = free_port(), free_port(), free_port()
    log_path = log_dir / f"{spec.name}-{http}.log"
    argv = pinned(SERVER_CPU, spec.command(http, grpc, metrics))
    log_file = open(log_path, "wb")  # noqa: SIM115 - owned by the child; closed on exit
    process = subprocess.Popen(
        argv,
        env=child_env(spec.env),
        cwd=spec.cwd,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log_file.close()
    return Running(spec, process, http, log_path)


def infer_once(port: int, body: bytes, timeout: float = 2.0) -> int | None:
    """Status of one V2 infer call, None when nothing answers yet."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("POST", "/v2/models/iris/infer", body, {"content-type": "application/json"})
        status = conn.getresponse().status
        conn.close()
        return status
    except OSError:
        return None


def wait_first_inference(run: Running, body: bytes, timeout: float) -> float:
    """Seconds from now until the first 200 answer to a V2 infer call (polling every 5 ms)."""
    started = time.perf_counter()
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if run.process.poll() is not None:
            raise RuntimeError(
                f"{run.spec.name} exited with {run.process.returncode}:\n{run.log()[-3000:]}"
            )
        if infer_once(run.http_port, body, timeout=5.0) == 200:
            return time.perf_counter() - started
        time.sleep(0.005)
    raise TimeoutError(
        f"{run.spec.name} gave no successful inference in {timeout}s:\n{run.log()[-3000:]}"
    )


def stop(run: Running) -> None:
    """SIGTERM the server's process group (it is ours: start_new_session), then SIGKILL."""
    harness.stop(run.process, group=True, grace_s=10)


def cold_start(
    spec: ServerSpec, body: bytes, log_dir: Path, timeout: float
) -> tuple[float, dict | None]:
    """Process spawn to first successful V2 inference, plus kninfer's own breakdown line."""
    spawned = time.perf_counter()
    run = start(spec, log_dir)
    try:
        wait_first_inference(run, body, timeout)
        elapsed = time.perf_counter() - spawned
        time.sleep(0.05)  # let the cold-start log line reach the file
        return elapsed, _breakdown(run.log())
    finally:
        stop(run)


def _breakdown(log: str) -> dict | None:
    for line in log.splitlines():
        marker = "cold start {"
        if marker in line:
            try:
                return json.loads(line[line.index(marker) + len("cold start ") :])
            except ValueError:
                return None
    return None


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process and its descendants, in MiB."""
    total_kb = 0
    for proc in [pid, *_descendants(pid)]:
        try:
            for line in Path(f"/proc/{proc}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return round(total_kb / 1024, 1)


def _descendants(pid: int) -> list[int]:
    children: list[int] = []
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        for task in tasks:
            text = (task / "children").read_text().split()
            children.extend(int(c) for c in text)
    except OSError:
        return children
    result = list(children)
    for child in children:
        result.extend(_descendants(child))
    return result


def wrk(
    wrk_path: str,
    port: int,
    body_file: Path,
    connections: int,
    seconds: float,
    timeout_s: float = 5.0,
) -> dict:
    """One fixed-duration wrk run; the Lua `done` hook prints a BENCHJSON line."""
    argv = pinned(
        LOADGEN_CPU,
        [
            wrk_path,
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={max(1, round(timeout_s))}s",
            "-s",
            str(BENCH / "post.lua"),
            f"http://127.0.0.1:{port}/v2/models/iris/infer",
            "--",
            str(body_file),
        ],
    )
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            result = json.loads(line[len("BENCHJSON ") :])
            result["rps"] = round(result["requests"] / (result["duration_us"] / 1e6), 1)
            result["errors"] = sum(
                result[k]
                for k in ("connect_errors", "read_errors", "write_errors", "timeouts", "non_2xx")
            )
            return result
    raise RuntimeError(
        f"wrk printed no result (rc {out.returncode}): {(out.stdout + out.stderr)[-2000:]}"
    )


def wrk_batches(
    run: Running, wrk_path: str, bodies: dict[int, Path], seconds: float, warm_s: float
) -> tuple[dict[int, dict], dict[int, list[dict]]]:
    """wrk with 8 connections for `seconds` per batch size, each after `warm_s` of warm-up (none
    at 0): the measured run per batch size, and every run per batch size (warm-up included), so
    a bench can count what the server answered."""
    measured: dict[int, dict] = {}
    every: dict[int, list[dict]] = {}
    for batch, body in bodies.items():
        runs = [wrk(wrk_path, run.http_port, body, 8, warm_s)] if warm_s > 0 else []
        measured[batch] = wrk(wrk_path, run.http_port, body, 8, seconds)
        every[batch] = [*runs, measured[batch]]
    return measured, every
