"""SIGTERM under keep-alive load: are accepted requests ever lost? (issue: 0-2 of ~200 were)

Each round starts `kninfer serve` (the embedded iris model) on 127.0.0.1, lets CLIENTS threads
with keep-alive connections send heavy V2 requests (ROWS rows each), sends SIGTERM mid-load, and
counts per request: answered (with its status), refused at connect (never accepted: the client
retries elsewhere, as Knative's activator and load balancers do), or lost (the connection was
closed or reset after the request was sent: a read or protocol error). Bounded: each client
stops at its first refusal, loss or after 30 s.

    .venv/bin/python -m bench.drain --rounds 10      # writes bench/results/drain.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.harness import free_port

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 24
ROWS = 20_000


def body(rows: int = ROWS) -> bytes:
    row = "[5.1,3.5,1.4,0.2]"
    data = ",".join([row] * rows)
    return (
        f'{{"inputs":[{{"name":"input-0","shape":[{rows},4],"datatype":"FP64","data":[{data}]}}]}}'
    ).encode()


def keep_alive_round(
    rows: int = ROWS, clients: int = CLIENTS, load_s: float = 1.5, cache: str | None = None
) -> dict[str, Any]:
    port, grpc_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KNINFER_")}
    env["XDG_CACHE_HOME"] = cache or tempfile.mkdtemp()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kninfer",
            "serve",
            "--host",
            "127.0.0.1",
            "--http-port",
            str(port),
            "--grpc-port",
            str(grpc_port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v2/models/iris/infer"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    payload = body(rows)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + 30

    def client() -> None:
        with httpx.Client(timeout=30, headers={"content-type": "application/json"}) as http:
            while time.monotonic() < stop_at:
                try:
                    status = http.post(url, content=payload).status_code
                    outcome = f"answered {status}"
                except httpx.ConnectError:
                    outcome = "refused"
                except httpx.HTTPError as exc:
                    outcome = f"lost ({type(exc).__name__})"
                with lock:
                    outcomes[outcome] += 1
                if not outcome.startswith("answered"):
                    return

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(load_s)
    server.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    code = server.wait(60)
    exit_s = time.monotonic() - signalled
    for thread in threads:
        thread.join(60)
    lost = sum(n for k, n in outcomes.items() if k.startswith("lost"))
    return {
        "exit_code": code,
        "exit_s": round(exit_s, 2),
        "lost": lost,
        "outcomes": dict(sorted(outcomes.items())),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "drain.json")
    options = parser.parse_args()
    cache = tempfile.mkdtemp()
    rounds = []
    for n in range(options.rounds):
        result = keep_alive_round(cache=cache)
        rounds.append(result)
        print(f"round {n + 1}: {json.dumps(result)}", flush=True)
    summary = {
        "command": f"python -m bench.drain --rounds {options.rounds}",
        "clients": CLIENTS,
        "rows_per_request": ROWS,
        "rounds_without_loss": sum(r["lost"] == 0 and r["exit_code"] == 0 for r in rounds),
        "rounds": rounds,
    }
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{summary['rounds_without_loss']} of {len(rounds)} rounds lost nothing and exited 0")
    return 0 if summary["rounds_without_loss"] == len(rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
