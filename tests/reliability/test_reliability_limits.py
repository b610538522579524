"""Limits, readiness and load failures against real `kninfer serve` processes.

- request timeout (KNINFER_REQUEST_TIMEOUT_S): 504 / DEADLINE_EXCEEDED, on every transport;
- bounded concurrency (KNINFER_MAX_INFLIGHT): 429 / RESOURCE_EXHAUSTED, and a timed-out request
  keeps its slot until its thread really ends, so abandoned work cannot pile up memory;
- batch rows (KNINFER_MAX_BATCH_ROWS): 413;
- readiness: the port opens only once the model is loaded and warmed up (Knative's readiness
  probe and the activator's first request never meet a server that cannot infer);
- a model that cannot load, or lives outside its root, ends the process with status 1 and one
  log line naming the reason, so Knative marks the revision failed.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from tests.support.reliability_models import BrokenClassifier, SlowClassifier, model_env, save_model
from tests.support.servers import ServerProcess, grpc_stub, server_env

# One shared server per module: keep the module on one xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("reliability-limits")

TIMEOUT_S = 1.0
MAX_INFLIGHT = 2
MAX_ROWS = 10
INFER = "/v2/models/slow/infer"


def body(ms: float, rows: int = 1) -> dict[str, object]:
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": [rows, 4],
                "datatype": "FP64",
                "data": [[ms, 1.0, 1.0, 1.0]] * rows,
            }
        ]
    }


def grpc_body(ms: float) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP64", shape=[1, 4])
    tensor.contents.fp64_contents.extend([ms, 1.0, 1.0, 1.0])
    return pb.ModelInferRequest(model_name="slow", inputs=[tensor])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("limits")
    model_dir = save_model(tmp / "slow", SlowClassifier())
    proc = ServerProcess(
        [
            "--model-dir",
            str(model_dir),
            "--model-name",
            "slow",
            "--request-timeout-s",
            str(TIMEOUT_S),
            "--max-inflight",
            str(MAX_INFLIGHT),
            "--max-batch-rows",
            str(MAX_ROWS),
            "--inference-threads",
            "4",
        ],
        server_env(tmp, **model_env()),
        tmp / "server.log",
    ).start(timeout=120)
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[GRPCInferenceServiceStub]:
    with grpc_stub(server.grpc_target) as stub:
        yield stub


def wait_idle(server: ServerProcess, seconds: float) -> None:
    """Let abandoned model calls (`seconds` of work left) finish, so the next request starts with
    every slot free."""
    time.sleep(seconds + 0.5)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reply = httpx.post(f"{server.url}{INFER}", json=body(0.0), timeout=30)
        if reply.status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError("server never became idle again")


TIMEOUT_MESSAGE = f"model 'slow' did not answer within {TIMEOUT_S:g}s (KNINFER_REQUEST_TIMEOUT_S)"


def test_request_timeout_is_504_on_every_transport(
    server: ServerProcess, stub: GRPCInferenceServiceStub
) -> None:
    reply = httpx.post(f"{server.url}{INFER}", json=body(2500.0), timeout=30)
    assert reply.status_code == 504
    assert reply.json() == {"error": TIMEOUT_MESSAGE}
    wait_idle(server, 1.5)

    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(grpc_body(2500.0), timeout=30)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert caught.value.details() == TIMEOUT_MESSAGE
    wait_idle(server, 1.5)

    event = httpx.post(
        f"{server.url}/",
        json=body(2500.0),
        timeout=30,
        headers={
            "ce-specversion": "1.0",
            "ce-id": "timeout-1",
            "ce-source": "/tests",
            "ce-type": "dev.kninfer.inference.request",
        },
    )
    assert event.status_code == 504  # retryable for Knative's delivery
    assert event.json() == {"error": TIMEOUT_MESSAGE}
    wait_idle(server, 1.5)


def test_overload_is_429_and_timed_out_work_keeps_its_slot(
    server: ServerProcess, stub: GRPCInferenceServiceStub
) -> None:
    # Two requests that time out (1 s) while their model calls run on for 4 s: the slots stay
    # taken until the threads end, so the third request is refused instead of queued.
    with ThreadPoolExecutor(max_workers=MAX_INFLIGHT) as pool:
        slow = [
            pool.submit(httpx.post, f"{server.url}{INFER}", json=body(4000.0), timeout=30)
            for _ in range(MAX_INFLIGHT)
        ]
        assert [f.result().status_code for f in slow] == [504] * MAX_INFLIGHT
    refused = httpx.post(f"{server.url}{INFER}", json=body(0.0), timeout=30)
    assert refused.status_code == 429
    assert refused.json() == {
        "error": f"{MAX_INFLIGHT} inferences in flight for model 'slow' "
        f"(limit {MAX_INFLIGHT}); retry later"
    }
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(grpc_body(0.0), timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    v1 = httpx.post(
        f"{server.url}/v1/models/slow:predict",
        json={"instances": [[0.0, 1.0, 1.0, 1.0]]},
        timeout=30,
    )
    assert v1.status_code == 429
    # Liveness and readiness stay up while overloaded (the probes must not restart the pod).
    assert httpx.get(f"{server.url}/v2/health/live", timeout=30).status_code == 200
    assert httpx.get(f"{server.url}/v2/health/ready", timeout=30).status_code == 200
    wait_idle(server, 3.0)


def test_batch_rows_limit_is_413(server: ServerProcess) -> None:
    assert (
        httpx.post(f"{server.url}{INFER}", json=body(0.0, MAX_ROWS), timeout=30).status_code == 200
    )
    reply = httpx.post(f"{server.url}{INFER}", json=body(0.0, MAX_ROWS + 1), timeout=30)
    assert reply.status_code == 413
    assert reply.json() == {
        "error": f"input 'input-0' has {MAX_ROWS + 1} rows; the limit is "
        f"{MAX_ROWS} (KNINFER_MAX_BATCH_ROWS)"
    }
    v1 = httpx.post(
        f"{server.url}/v1/models/slow:predict",
        json={"instances": [[0.0, 1.0, 1.0, 1.0]] * (MAX_ROWS + 1)},
        timeout=30,
    )
    assert v1.status_code == 413


def test_ready_only_after_load_and_warmup(tmp_path: Path) -> None:
    warmup_s = 2.0
    model_dir = save_model(tmp_path / "slow", SlowClassifier(zero_delay_s=warmup_s))
    server = ServerProcess(
        ["--model-dir", str(model_dir), "--model-name", "slow"],
        server_env(tmp_path, **model_env()),
        tmp_path / "server.log",
    )
    server.start(wait=False)
    answers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert server.process is not None and server.process.poll() is None, server.log()
            try:
                status = httpx.get(f"{server.url}/v2/health/ready", timeout=2).status_code
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            answers.append(status)
            if status == 200:
                break
        # The very first answer the port gives is "ready": nothing listens before warm-up ends.
        assert answers == [200]
        cold = json.loads(server.log().split("cold start ", 1)[1].splitlines()[0])
        assert cold["warmup_ms"] >= warmup_s * 1000 * 0.95
        reply = httpx.post(f"{server.url}{INFER}", json=body(0.0, 2), timeout=30)
        assert reply.status_code == 200
        assert reply.json()["outputs"][0]["data"] == [0, 1]
    finally:
        assert server.stop() == 0


def _bad_models(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """(serve args, expected reason) for failures the sklearn family tests do not already cover
    (they cover corrupt files, missing directories and symlink escapes)."""
    broken = save_model(tmp / "broken", BrokenClassifier())
    outside = save_model(tmp / "elsewhere", SlowClassifier())
    root = tmp / "models"
    root.mkdir()
    traversal = root / ".." / "elsewhere"
    return {
        "warmup-fails": (
            ["--model-dir", str(broken)],
            "model loaded but failed its warm-up prediction: RuntimeError: weights are corrupt",
        ),
        "dotdot-outside-root": (
            ["--storage-uri", f"file://{traversal}", "--model-root", str(root)],
            f"model failed to load: model directory {traversal} resolves "
            f"to {outside}, outside the configured model root {root}",
        ),
    }


def test_load_failures_exit_1_with_one_log_line(tmp_path: Path) -> None:
    cases = _bad_models(tmp_path)
    env = server_env(tmp_path, **model_env())
    procs = {}
    for name, (args, _) in cases.items():  # started together: each pays the import cost once
        procs[name] = ServerProcess(args, env, tmp_path / f"{name}.log").start(wait=False)
    for name, (_, reason) in cases.items():
        proc = procs[name]
        assert proc.process is not None
        try:
            code = proc.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.stop()
            raise
        proc.stop()
        log = proc.log()
        errors = [line for line in log.splitlines() if " ERROR " in line]
        assert code == 1, (name, log)
        assert len(errors) == 1, (name, log)
        assert reason in errors[0], (name, errors[0])
        assert "Traceback" not in log, (name, log)
        assert "listening" not in log and "Uvicorn running" not in log, (name, log)
