"""Running a fast compiled model on the event loop (kninfer.predictors.base._decide_inline) and
the event loop the server runs on (kninfer.server.lifecycle.event_loop_factory).

A logistic regression on iris is trained here and compiled by the real `kninfer compile`; the
predictor is loaded in process, as `kninfer serve` loads it, and its requests are run through
`Predictor.execute`, recording which thread each model call ran on. A real server process on
asyncio's own loop (not uvloop) answers V2 over HTTP and gRPC as the default one does.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from tests.support.compiled_models import compiled_here
from tests.support.servers import ServerProcess, grpc_stub, server_env


@pytest.fixture(scope="module")
def compiled_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    model_dir = tmp_path_factory.mktemp("iris")
    joblib.dump(
        LogisticRegression(max_iter=1000).fit(data.data, data.target), model_dir / "m.joblib"
    )
    sample = model_dir.parent / "iris.csv"
    np.savetxt(sample, data.data, delimiter=",")
    compiled_here(model_dir, "--sample", str(sample))
    return model_dir


def load(model_dir: Path, **settings: Any) -> Any:
    from kninfer.predictors import predictor_class
    from kninfer.settings import ServeSettings

    serve = ServeSettings(model_dir=model_dir, predictor="sklearn", **settings)
    predictor = predictor_class("sklearn", model_dir, serve)("iris", model_dir, serve)
    predictor.load()
    return predictor


def threads_of_calls(predictor: Any, requests: list[np.ndarray]) -> list[str]:
    """The thread each request's model call ran on, run one after another via `execute`."""
    seen: list[str] = []
    run = predictor.run

    def recording_run(arrays: Any, outputs: Any) -> Any:
        seen.append(threading.current_thread().name)
        return run(arrays, outputs)

    predictor.run = recording_run

    async def all_requests() -> None:
        for rows in requests:
            await predictor.execute({"input-0": rows}, ["predict"])

    asyncio.run(all_requests())
    predictor.run = run
    return seen


ROW = np.array([[5.1, 3.5, 1.4, 0.2]])


def test_a_fast_compiled_model_runs_on_the_event_loop(compiled_dir: Path) -> None:
    predictor = load(compiled_dir, runtime="onnx")
    assert predictor.inline_max_rows == 64  # the 64-row warm-up batch was under 200 us too
    assert threads_of_calls(predictor, [ROW, np.repeat(ROW, 64, axis=0)]) == ["MainThread"] * 2
    # More rows than were timed at warm-up: an inference thread.
    (thread,) = threads_of_calls(predictor, [np.repeat(ROW, 65, axis=0)])
    assert thread.startswith("infer-iris")


def test_inline_below_us_zero_keeps_every_call_on_a_thread(compiled_dir: Path) -> None:
    predictor = load(compiled_dir, runtime="onnx", inline_below_us=0)
    assert predictor.inline_max_rows == 0
    assert all(t.startswith("infer-iris") for t in threads_of_calls(predictor, [ROW, ROW]))


def test_a_model_that_can_run_any_code_never_runs_inline(compiled_dir: Path) -> None:
    # The joblib estimator: a pickle can run anything (sleep, call out) while the loop waits.
    predictor = load(compiled_dir, runtime="native", inline_below_us=1e9)
    assert predictor.inline_max_rows == 0
    assert threads_of_calls(predictor, [ROW])[0].startswith("infer-iris")


def test_slow_calls_send_requests_of_their_size_back_to_the_threads(
    compiled_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    predictor = load(compiled_dir, runtime="onnx")
    run = predictor.run

    def slow_when_wide(arrays: Any, outputs: Any) -> Any:
        if len(arrays["input-0"]) >= 20:
            time.sleep(0.002)  # 2 ms: ten times the 200 us limit
        return run(arrays, outputs)

    predictor.run = slow_when_wide
    wide = np.repeat(ROW, 30, axis=0)
    narrower = np.repeat(ROW, 20, axis=0)
    assert threads_of_calls(predictor, [wide, wide, narrower]) == ["MainThread"] * 3
    assert predictor.inline_max_rows == 19  # three strikes: the smallest of them, less one
    assert "requests of more than 19 row(s) run on inference threads" in caplog.text
    predictor.run = slow_when_wide
    threads = threads_of_calls(predictor, [narrower, ROW])
    assert threads[0].startswith("infer-iris") and threads[1] == "MainThread"


def test_the_event_loop_is_uvloop_unless_asked_otherwise() -> None:
    import uvloop

    from kninfer.server.lifecycle import event_loop_factory

    assert event_loop_factory("auto") is uvloop.new_event_loop
    assert event_loop_factory("uvloop") is uvloop.new_event_loop
    assert event_loop_factory("asyncio") is None


def test_a_server_on_asyncios_own_loop_answers_http_and_grpc(
    compiled_dir: Path, tmp_path: Path
) -> None:
    import httpx
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    server = ServerProcess(
        ["--predictor", "sklearn", "--model-dir", str(compiled_dir), "--model-name", "iris"],
        server_env(tmp_path, KNINFER_EVENT_LOOP="asyncio"),
        tmp_path / "server.log",
    ).start()
    try:
        body = {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, 4],
                    "datatype": "FP64",
                    "data": ROW.ravel().tolist(),
                }
            ]
        }
        answer = httpx.post(f"{server.url}/v2/models/iris/infer", json=body, timeout=10).json()
        estimator = joblib.load(compiled_dir / "m.joblib")
        assert answer["outputs"][0]["data"] == estimator.predict(ROW).tolist()
        request = pb.ModelInferRequest(model_name="iris")
        tensor = request.inputs.add(name="input-0", datatype="FP64", shape=[1, 4])
        tensor.contents.fp64_contents.extend(ROW.ravel().tolist())
        with grpc_stub(server.grpc_target) as stub:
            reply = stub.ModelInfer(request, timeout=10)
        got = np.frombuffer(reply.raw_output_contents[0], dtype=np.int64)
        assert got.tolist() == estimator.predict(ROW).tolist()
    finally:
        server.stop()
