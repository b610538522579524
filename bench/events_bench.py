"""CloudEvents on the V2 endpoint: kninfer vs KServe 0.21, side by side in one run.

    .venv/bin/python -m bench.events_bench [--requests 1000]

Starts `kninfer serve` (embedded iris) and a stock KServe 0.21 ModelServer with the documented
custom-model pattern (same iris model) on loopback, then sends the same V2 request to
`POST /v2/models/iris/infer` as a plain request, a binary-mode event, a structured-mode event,
and a redelivered binary event (same source and id), interleaved, on one keep-alive connection.
Reports the status and reply content type of each server, and latency percentiles. Also times
the only code a plain request runs because of CloudEvents support (the header check).
Writes bench/results/events.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.harness import free_port, wait_ready

ROOT = Path(__file__).resolve().parent.parent
REQUEST = {
    "inputs": [
        {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
    ]
}
BODY = json.dumps(REQUEST).encode()


# KServe's documented custom-model pattern ("Deploy a custom Python model"), stock ModelServer.
KSERVE_PEER = """
import sys
model_dir, http_port, grpc_port = sys.argv[1:4]
sys.argv = sys.argv[:1]
import joblib, numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

class Iris(Model):
    def __init__(self):
        super().__init__("iris")
        self.model = joblib.load(model_dir + "/model.joblib")
        self.ready = True

    def predict(self, payload, headers=None):
        result = self.model.predict(payload.inputs[0].as_numpy()).astype(np.int64)
        out = InferOutput(name="predict", shape=list(result.shape), datatype="INT64")
        out.set_data_from_numpy(result, binary_data=False)
        return InferResponse(response_id=payload.id or "", model_name="iris",
                             infer_outputs=[out])

ModelServer(http_port=int(http_port), grpc_port=int(grpc_port), enable_grpc=False).start([Iris()])
"""


def binary(event_id: str) -> tuple[dict[str, str], bytes]:
    return {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "bench",
        "ce-type": "dev.kninfer.inference.request",
        "content-type": "application/json",
    }, BODY


def structured(event_id: str) -> tuple[dict[str, str], bytes]:
    doc = {
        "specversion": "1.0",
        "id": event_id,
        "source": "bench",
        "type": "dev.kninfer.inference.request",
        "time": "2026-01-01T00:00:00Z",
        "datacontenttype": "application/json",
        "data": REQUEST,
    }
    return {"content-type": "application/cloudevents+json"}, json.dumps(doc).encode()


CASES: dict[str, Callable[[int], tuple[dict[str, str], bytes]]] = {
    "plain V2": lambda i: ({"content-type": "application/json"}, BODY),
    "binary event": lambda i: binary(str(uuid.uuid4())),
    "structured event": lambda i: structured(str(uuid.uuid4())),
    "binary event, redelivered": lambda i: binary("same-id"),
}


def measure(url: str, requests: int) -> list[dict[str, object]]:
    """Cases interleaved request by request, so background load on a shared machine hits all
    of them alike."""
    latencies: dict[str, list[float]] = {case: [] for case in CASES}
    first: dict[str, httpx.Response] = {}
    target = f"{url}/v2/models/iris/infer"
    with httpx.Client(timeout=30) as client:
        for i in range(-50, requests):  # 50 warm-up rounds
            for case, build in CASES.items():
                headers, body = build(i)
                started = time.perf_counter()
                response = client.post(target, content=body, headers=headers)
                elapsed = (time.perf_counter() - started) * 1000
                if i >= 0:
                    latencies[case].append(elapsed)
                    first.setdefault(case, response)
    rows: list[dict[str, object]] = []
    for case, values in latencies.items():
        values.sort()
        response = first[case]
        content_type = response.headers.get("content-type", "(none)")
        rows.append(
            {
                "case": case,
                "status": response.status_code,
                "content_type": content_type,
                "reply_event": "ce-id" in response.headers
                or content_type.startswith("application/cloudevents"),
                "p50_ms": round(statistics.median(values), 2),
                "p99_ms": round(values[int(len(values) * 0.99) - 1], 2),
            }
        )
    return rows


def header_check_ns() -> float:
    from kninfer.cloudevents.binding import is_event

    headers = {
        "host": "127.0.0.1",
        "content-type": "application/json",
        "content-length": "96",
        "user-agent": "python-httpx",
    }
    runs = 200_000
    seconds = timeit.timeit(lambda: is_event(headers), number=runs)
    return seconds / runs * 1e9


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    from kninfer.iris import ensure_iris_model

    tmp = Path(tempfile.mkdtemp(prefix="kninfer-events-bench-"))
    model_dir = ensure_iris_model(tmp)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KNINFER_")}
    env["XDG_CACHE_HOME"] = str(tmp / "cache")
    servers: dict[str, list[str]] = {}
    kn_http, kn_grpc, ks_http, ks_grpc = (free_port() for _ in range(4))
    servers["kninfer"] = [
        sys.executable,
        "-m",
        "kninfer",
        "serve",
        "--host",
        "127.0.0.1",
        "--http-port",
        str(kn_http),
        "--grpc-port",
        str(kn_grpc),
    ]
    servers["kserve 0.21"] = [
        sys.executable,
        "-c",
        KSERVE_PEER,
        str(model_dir),
        str(ks_http),
        str(ks_grpc),
    ]
    ports = {"kninfer": kn_http, "kserve 0.21": ks_http}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    lines = [
        f"# CloudEvents on POST /v2/models/iris/infer ({args.requests} sequential requests "
        "per case, one keep-alive connection, loopback)",
        "",
        f"Command: `.venv/bin/python -m bench.events_bench --requests {args.requests}`",
        "",
        "| server | request | status | reply content-type | reply is an event | p50 ms | p99 ms |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    try:
        for name, command in servers.items():
            log = open(tmp / f"{name.split()[0]}.log", "wb")  # noqa: SIM115 - process lifetime
            processes[name] = subprocess.Popen(
                command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        for name, process in processes.items():
            url = f"http://127.0.0.1:{ports[name]}"
            wait_ready(url, process, path="/v2/models/iris/ready")
            for row in measure(url, args.requests):
                lines.append(
                    f"| {name} | {row['case']} | {row['status']} | {row['content_type']} | "
                    f"{'yes' if row['reply_event'] else 'no'} | {row['p50_ms']} | "
                    f"{row['p99_ms']} |"
                )
    finally:
        for process in processes.values():
            process.terminate()
            process.wait(30)
    lines += [
        "",
        f"Header check a plain request pays for CloudEvents support "
        f"(`EventEndpoint.wants`): {header_check_ns():.0f} ns per request.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    out = ROOT / "bench" / "results" / "events.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
