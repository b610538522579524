"""Sustained load on loopback: thousands of requests, zero errors, no memory growth.

A pod that lives for hours between scale-downs must not leak: after a warm-up (allocator pools,
metric label sets, the CloudEvents redelivery cache filled to its bound), resident memory may grow
by less than 10% over the measured run. RSS is read from /proc/<pid>/status (VmRSS).

Every request kind the server takes is in the mix: V2 JSON, V2 binary tensor extension, V1,
gRPC V2 and binary-mode CloudEvents, each reply checked for the right prediction. The CI variant
is bounded in count and time; `make test-long` runs the long one (`-m slow`).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import numpy as np
import orjson
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from tests.support.servers import ServerProcess, server_env

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]  # setosa, virginica
LABELS = [0, 2]
DEDUPE_SIZE = 100
KINDS = ("v2-json", "v2-binary", "v1", "grpc", "cloudevent")

V2_JSON = orjson.dumps(
    {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": ROWS}]}
)
_HEADER = orjson.dumps(
    {
        "inputs": [
            {
                "name": "input-0",
                "shape": [2, 4],
                "datatype": "FP64",
                "parameters": {"binary_data_size": 64},
            }
        ],
        "outputs": [{"name": "predict", "parameters": {"binary_data": True}}],
    }
)
V2_BINARY = _HEADER + np.asarray(ROWS, dtype=np.float64).tobytes()
V1_JSON = orjson.dumps({"instances": ROWS})


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc status")


def grpc_request() -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP64", shape=[2, 4])
    return pb.ModelInferRequest(
        model_name="iris",
        inputs=[tensor],
        raw_input_contents=[np.asarray(ROWS, np.float64).tobytes()],
    )


@dataclass
class LoadResult:
    sent: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def errors(self) -> dict[str, int]:
        return {k: v for k, v in self.outcomes.items() if not k.endswith(":ok")}


class Load:
    """`threads` workers, each with its own keep-alive HTTP client and gRPC channel."""

    def __init__(self, server: ServerProcess, threads: int) -> None:
        self.server = server
        self.threads = threads
        self.ids = itertools.count()
        self.lock = threading.Lock()

    def one(self, http: httpx.Client, stub: GRPCInferenceServiceStub, n: int) -> str:
        kind = KINDS[n % len(KINDS)]
        try:
            if kind == "grpc":
                reply = stub.ModelInfer(grpc_request(), timeout=30)
                labels = np.frombuffer(reply.raw_output_contents[0], np.int64).tolist()
                return f"{kind}:{'ok' if labels == LABELS else 'wrong'}"
            if kind == "v2-json":
                response = http.post(
                    "/v2/models/iris/infer",
                    content=V2_JSON,
                    headers={"content-type": "application/json"},
                )
                good = (
                    response.status_code == 200 and response.json()["outputs"][0]["data"] == LABELS
                )
            elif kind == "v2-binary":
                response = http.post(
                    "/v2/models/iris/infer",
                    content=V2_BINARY,
                    headers={"inference-header-content-length": str(len(_HEADER))},
                )
                length = int(response.headers.get("inference-header-content-length", 0))
                good = (
                    response.status_code == 200
                    and np.frombuffer(response.content[length:], np.int64).tolist() == LABELS
                )
            elif kind == "v1":
                response = http.post("/v1/models/iris:predict", content=V1_JSON)
                good = response.status_code == 200 and response.json() == {"predictions": LABELS}
            else:
                response = http.post(
                    "/",
                    content=V2_JSON,
                    headers={
                        "ce-specversion": "1.0",
                        "ce-id": f"soak-{n}",
                        "ce-source": "/tests/soak",
                        "ce-type": "dev.kninfer.inference.request",
                        "content-type": "application/json",
                    },
                )
                good = (
                    response.status_code == 200
                    and response.headers.get("ce-type") == "dev.kninfer.inference.response"
                    and response.json()["outputs"][0]["data"] == LABELS
                )
            return f"{kind}:{'ok' if good else response.status_code}"
        except (httpx.HTTPError, grpc.RpcError) as exc:
            return f"{kind}:{type(exc).__name__}"

    def run(self, total: int, max_seconds: float) -> LoadResult:
        result = LoadResult()
        deadline = time.monotonic() + max_seconds
        started = time.monotonic()

        def worker() -> Counter[str]:
            seen: Counter[str] = Counter()
            channel = grpc.insecure_channel(self.server.grpc_target)
            stub = GRPCInferenceServiceStub(channel)
            with httpx.Client(base_url=self.server.url, timeout=30) as http:
                while time.monotonic() < deadline:
                    with self.lock:
                        n = next(self.ids)
                        if result.sent >= total:
                            break
                        result.sent += 1
                    seen[self.one(http, stub, n)] += 1
            channel.close()
            return seen

        with ThreadPoolExecutor(self.threads) as pool:
            for seen in pool.map(lambda _: worker(), range(self.threads)):
                result.outcomes.update(seen)
        result.seconds = time.monotonic() - started
        return result


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        ["--ce-dedupe-size", str(DEDUPE_SIZE)], server_env(tmp_path), tmp_path / "server.log"
    ).start(timeout=120)
    yield proc
    assert proc.stop() == 0, proc.log()


def soak(
    server: ServerProcess, warmup: int, total: int, max_seconds: float, threads: int
) -> tuple[LoadResult, int, int]:
    assert server.process is not None
    load = Load(server, threads)
    warm = load.run(warmup, max_seconds)
    assert warm.errors == {}, warm.outcomes
    before = rss_kib(server.process.pid)
    measured = load.run(total, max_seconds)
    after = rss_kib(server.process.pid)
    rate = measured.sent / measured.seconds
    print(
        f"\nsoak: {measured.sent} requests in {measured.seconds:.1f}s ({rate:.0f}/s, "
        f"{threads} threads), RSS {before} -> {after} KiB "
        f"({(after - before) / before:+.1%}), outcomes {dict(measured.outcomes)}"
    )
    assert measured.errors == {}, measured.outcomes
    return measured, before, after


def test_sustained_load_no_errors_no_growth(server: ServerProcess) -> None:
    measured, before, after = soak(server, warmup=800, total=3000, max_seconds=40, threads=4)
    assert measured.sent >= 2000  # thousands, even on a loaded CI machine
    assert after < before * 1.10


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sustained_load_long(server: ServerProcess) -> None:
    measured, before, after = soak(server, warmup=5000, total=60_000, max_seconds=420, threads=8)
    assert measured.sent >= 20_000
    assert after < before * 1.10
