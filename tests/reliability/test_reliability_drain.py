"""SIGTERM under load: what Knative does to every pod it scales down.

The Knative runtime contract sends SIGTERM and, after the pod's terminationGracePeriodSeconds,
SIGKILL (knative/specs, runtime-contract.md, "Lifecycle"). kninfer must answer every request it
had accepted (HTTP V2, V1, CloudEvents and gRPC alike), stop taking new ones, and exit 0 within
its grace period. The model here sleeps as long as each request asks, so requests are provably
still running when the signal arrives.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from tests.support.reliability_models import SlowClassifier, model_env, save_model
from tests.support.servers import ServerProcess, grpc_stub, server_env, stop_under_load

SLEEP_MS = 1500.0
GRACE_S = 20.0


def slow_row(ms: float = SLEEP_MS) -> list[float]:
    return [ms, 1.0, 1.0, 1.0]


def start(tmp: Path, *flags: str) -> ServerProcess:
    model_dir = save_model(tmp / "slow", SlowClassifier())
    env = server_env(tmp, **model_env())
    return ServerProcess(
        ["--model-dir", str(model_dir), "--model-name", "slow", *flags], env, tmp / "server.log"
    ).start(timeout=120)


def v2_body(ms: float = SLEEP_MS) -> dict[str, object]:
    return {
        "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": slow_row(ms)}]
    }


def grpc_body(ms: float = SLEEP_MS) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP64", shape=[1, 4])
    tensor.contents.fp64_contents.extend(slow_row(ms))
    return pb.ModelInferRequest(model_name="slow", inputs=[tensor])


def post(url: str, **kwargs: object) -> tuple[int, object, float]:
    """One request on its own connection; (status, JSON body, time it finished)."""
    reply = httpx.post(url, timeout=60, **kwargs)  # type: ignore[arg-type]
    return reply.status_code, reply.json(), time.monotonic()


def wait_in_flight(server: ServerProcess, expected: int, timeout: float = 60.0) -> None:
    """Until `kninfer_requests_in_flight` (all protocols) reaches `expected`."""
    deadline = time.monotonic() + timeout
    total = 0.0
    while time.monotonic() < deadline:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        total = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("kninfer_requests_in_flight{")
        )
        if total >= expected:
            return
        time.sleep(0.05)
    raise AssertionError(f"only {total} of {expected} requests in flight after {timeout}s")


@pytest.fixture
def stub_factory() -> Iterator[object]:
    with contextlib.ExitStack() as stubs:

        def make(target: str) -> GRPCInferenceServiceStub:
            return stubs.enter_context(grpc_stub(target))

        yield make


def test_sigterm_finishes_inflight_http_events_and_grpc(tmp_path: Path, stub_factory) -> None:
    server = start(tmp_path, "--grace-period-s", str(GRACE_S), "--inference-threads", "6")
    stub = stub_factory(server.grpc_target)
    # An idle keep-alive connection (queue-proxy keeps a pool) must not hold the drain open.
    idle = httpx.Client(base_url=server.url, timeout=30)
    assert idle.post("/v2/models/slow/infer", json=v2_body(1.0)).status_code == 200
    ce_headers = {
        "ce-specversion": "1.0",
        "ce-source": "/tests/drain",
        "ce-type": "dev.kninfer.inference.request",
        "content-type": "application/json",
    }
    with ThreadPoolExecutor(max_workers=16) as pool:
        http: list[Future[tuple[int, object, float]]] = []
        for _ in range(6):
            http.append(pool.submit(post, f"{server.url}/v2/models/slow/infer", json=v2_body()))
        for _ in range(2):
            http.append(
                pool.submit(
                    post, f"{server.url}/v1/models/slow:predict", json={"instances": [slow_row()]}
                )
            )
        for n in range(3):
            http.append(
                pool.submit(
                    post,
                    f"{server.url}/",
                    json=v2_body(),
                    headers={**ce_headers, "ce-id": f"drain-{n}"},
                )
            )
        rpcs = [stub.ModelInfer.future(grpc_body(), timeout=60) for _ in range(4)]
        # 15 requests of 1.5 s on 6 threads need ~4.5 s: signal once the server counts every
        # one of them in flight (accepted, queued or running).
        wait_in_flight(server, len(http) + len(rpcs))
        signalled = time.monotonic()
        server.signal(signal.SIGTERM)
        time.sleep(0.3)
        # New work is refused while the old finishes: the listener is closed and gRPC is stopping.
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.url}/v2/health/ready", timeout=5)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(grpc_body(1.0), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

        results = [f.result(timeout=60) for f in http]
        replies = [r.result(timeout=60) for r in rpcs]
    assert [status for status, _, _ in results] == [200] * len(results), results
    assert all(body["outputs"][0]["data"] == [0] for _, body, _ in results[:6])  # type: ignore[index]
    assert all(body == {"predictions": [0]} for _, body, _ in results[6:8])
    assert all(body["outputs"][0]["name"] == "predict" for _, body, _ in results[8:])  # type: ignore[index]
    for reply in replies:
        assert np.frombuffer(reply.raw_output_contents[0], dtype=np.int64).tolist() == [0]
    # The drain was real: requests were still being answered after the signal.
    assert sum(finished > signalled for _, _, finished in results) >= 5
    assert server.process is not None
    code = server.process.wait(timeout=GRACE_S)
    exited = time.monotonic()
    idle.close()
    assert code == 0, server.log()
    assert exited - signalled < GRACE_S
    # Once the last request is answered the process leaves promptly (generous for a busy CI box).
    assert exited - max(finished for _, _, finished in results) < 10.0
    log = server.log()
    assert "received SIGTERM: draining" in log
    assert "stopped cleanly" in log


def test_grace_period_bounds_the_drain(tmp_path: Path) -> None:
    """A request that outlives the grace period does not keep the pod alive: the process exits
    once the grace period is spent (before Kubernetes would SIGKILL it) and says so."""
    grace = 2.0
    server = start(tmp_path, "--grace-period-s", str(grace))
    with ThreadPoolExecutor(max_workers=1) as pool:
        stuck = pool.submit(
            httpx.post, f"{server.url}/v2/models/slow/infer", json=v2_body(30_000.0), timeout=60
        )
        time.sleep(0.8)
        signalled = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.process is not None
        code = server.process.wait(timeout=30)
        exited = time.monotonic() - signalled
        reply = stuck.result(timeout=30)
    assert reply.status_code == 503
    assert reply.json() == {
        "error": "the server is shutting down and its grace period "
        "(KNINFER_GRACE_PERIOD_S) ended before this request "
        "finished; retry"
    }
    assert code == 0, server.log()
    assert exited < grace + 5.0, exited
    assert "grace period" in server.log()


def test_keep_alive_clients_lose_no_accepted_request(tmp_path: Path) -> None:
    """24 keep-alive clients sending 20k-row V2 requests, SIGTERM mid-load (bench/drain.py,
    which runs ten rounds for docs/reliability.md): every request the server accepted is
    answered, the rest are refused at connect, and the process exits 0. Two rounds here."""
    from bench.drain import keep_alive_round

    for _ in range(2):
        result = keep_alive_round(cache=str(tmp_path / "cache"))
        assert (result["exit_code"], result["lost"]) == (0, 0), result
        answered = {k for k in result["outcomes"] if k.startswith("answered")}
        assert answered and answered <= {"answered 200"}, result


RECORD = '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'


def stop_with_sigterm(server: ServerProcess) -> int:
    """SIGTERM, then the exit code once the drain is over."""
    server.signal()
    assert server.process is not None
    return server.process.wait(60)


def test_a_transformer_loses_no_accepted_request(tmp_path: Path) -> None:
    """The transformer drains as the predictor does (`make image-test` once lost one request
    stopping the iris transformer under load): 8 keep-alive clients send records to the iris
    transformer, whose every request calls the predictor; SIGTERM to the transformer mid-load.
    Every request it accepted is answered 200, the rest are refused at connect, and it exits 0.
    Two rounds against one predictor."""
    body = {"inputs": [{"name": "records", "shape": [1], "datatype": "BYTES", "data": [RECORD]}]}
    predictor = ServerProcess([], server_env(tmp_path), tmp_path / "predictor.log").start()
    try:
        for round_ in range(2):
            transformer = ServerProcess(
                ["--transformer", "iris", "--predictor-host", f"127.0.0.1:{predictor.http_port}"],
                server_env(tmp_path),
                tmp_path / f"transformer-{round_}.log",
            ).start()
            code, statuses, lost = stop_under_load(
                f"{transformer.url}/v2/models/iris/infer",
                functools.partial(stop_with_sigterm, transformer),
                body,
                clients=8,
            )
            assert (code, lost) == (0, []), transformer.log()
            assert statuses and set(statuses) == {200}, statuses
    finally:
        predictor.stop()
