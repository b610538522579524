"""kninfer.batching: the AdaptiveBatcher driven in-process by a real Predictor subclass (so the
batch boundaries are observable), then end to end through `kninfer serve --batching`."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest

from kninfer.batching import AdaptiveBatcher, group_key
from kninfer.errors import InvalidInput
from kninfer.predictors.base import Arrays, Predictor
from kninfer.protocol.tensor import TensorSpec
from kninfer.settings import ServeSettings

POISON = -999.0


class RowPredictor(Predictor):
    """y = 2x + 1 row by row; records every model call; a POISON value makes run() fail."""

    family = "test-rows"

    def __init__(self, threads: int = 2, delay_s: float = 0.0) -> None:
        super().__init__("rows", Path("."), ServeSettings(inference_threads=threads))
        self.delay_s = delay_s
        self.calls: list[dict[str, tuple[int, ...]]] = []
        self.lock = threading.Lock()
        self.started = threading.Event()

    def load_model(self) -> None:
        self.inputs = [TensorSpec("x", "FP64", (-1, -1))]
        self.outputs = [TensorSpec("y", "FP64", (-1, -1)), TensorSpec("z", "FP64", (-1,))]

    def run(self, inputs: Arrays, outputs: Sequence[str]) -> Arrays:
        with self.lock:
            self.calls.append({k: v.shape for k, v in inputs.items()})
        self.started.set()
        if self.delay_s:
            time.sleep(self.delay_s)
        x = inputs["x"]
        if (x == POISON).any():
            raise InvalidInput("poisoned row")
        result = {"y": 2 * x + 1, "z": x.sum(axis=1)}
        return {name: result[name] for name in outputs}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def rows(i: int, n: int = 1, width: int = 3) -> np.ndarray:
    return np.arange(n * width, dtype=np.float64).reshape(n, width) + 100 * i


def test_group_key_separates_what_cannot_be_concatenated() -> None:
    a = {"x": rows(0)}
    assert group_key(a, ["y"]) == group_key({"x": rows(5, n=4)}, ["y"])
    assert group_key(a, ["y"]) != group_key(a, ["y", "z"])
    assert group_key(a, ["y"]) != group_key({"x": rows(0, width=4)}, ["y"])
    assert group_key(a, ["y"]) != group_key({"x": rows(0).astype(np.float32)}, ["y"])
    assert group_key({"x": np.float64(1.0)}, ["y"]) is None  # type: ignore[dict-item]
    assert group_key({"x": rows(0, n=2), "w": rows(0, n=3)}, ["y"]) is None


def test_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="--max-batch-size must be at least 1"):
        AdaptiveBatcher(RowPredictor(), 0, 1.0)


@pytest.mark.anyio
async def test_concurrent_callers_each_get_their_own_rows() -> None:
    predictor = RowPredictor()
    predictor.load_model()
    batcher = AdaptiveBatcher(predictor, max_batch_size=64, max_latency_ms=20)
    seen: list[tuple[int, int]] = []
    batcher.on_batch.append(lambda r, n: seen.append((r, n)))
    sizes = [1 + i % 3 for i in range(32)]
    results = await asyncio.gather(
        *(batcher.submit({"x": rows(i, n)}, ["y", "z"]) for i, n in enumerate(sizes))
    )
    for i, (n, result) in enumerate(zip(sizes, results, strict=True)):
        np.testing.assert_array_equal(result["y"], 2 * rows(i, n) + 1)
        np.testing.assert_array_equal(result["z"], rows(i, n).sum(axis=1))
    assert sum(r for r, _ in seen) == sum(sizes)
    assert sum(n for _, n in seen) == 32
    assert len(predictor.calls) < 32  # concatenated, not one call per request
    await batcher.close()


@pytest.mark.anyio
async def test_batches_respect_max_batch_size_and_groups() -> None:
    predictor = RowPredictor()
    predictor.load_model()
    batcher = AdaptiveBatcher(predictor, max_batch_size=4, max_latency_ms=20)
    jobs = [batcher.submit({"x": rows(i)}, ["y"]) for i in range(10)]
    jobs += [batcher.submit({"x": rows(i, width=5)}, ["y"]) for i in range(10, 13)]
    jobs += [batcher.submit({"x": rows(i)}, ["z"]) for i in range(13, 16)]
    jobs += [batcher.submit({"x": rows(16, n=9)}, ["y"])]  # larger than a batch: runs alone
    results = await asyncio.gather(*jobs)
    for i, result in enumerate(results[:10]):
        np.testing.assert_array_equal(result["y"], 2 * rows(i) + 1)
    for i, result in enumerate(results[10:13], start=10):
        np.testing.assert_array_equal(result["y"], 2 * rows(i, width=5) + 1)
    for i, result in enumerate(results[13:16], start=13):
        assert list(result) == ["z"]
        np.testing.assert_array_equal(result["z"], rows(i).sum(axis=1))
    np.testing.assert_array_equal(results[16]["y"], 2 * rows(16, n=9) + 1)
    shapes = [call["x"] for call in predictor.calls]
    assert (9, 3) in shapes
    assert all(s[0] <= 4 for s in shapes if s != (9, 3))
    assert sum(s[0] for s in shapes if s[1] == 5) == 3  # width-5 rows never mixed with width 3
    await batcher.close()


@pytest.mark.anyio
async def test_a_failing_request_does_not_fail_its_batch() -> None:
    predictor = RowPredictor()
    predictor.load_model()
    batcher = AdaptiveBatcher(predictor, max_batch_size=32, max_latency_ms=30)
    bad = rows(3)
    bad[0, 1] = POISON
    jobs = [batcher.submit({"x": bad if i == 3 else rows(i)}, ["y"]) for i in range(8)]
    results = await asyncio.gather(*jobs, return_exceptions=True)
    assert isinstance(results[3], InvalidInput) and str(results[3]) == "poisoned row"
    for i, result in enumerate(results):
        if i != 3:
            assert isinstance(result, dict)
            np.testing.assert_array_equal(result["y"], 2 * rows(i) + 1)
    # One batched call failed, then each of the 8 ran alone.
    assert [c["x"][0] for c in predictor.calls].count(8) == 1
    assert len(predictor.calls) == 9
    await batcher.close()


@pytest.mark.anyio
async def test_cancelled_callers_do_not_lose_the_others_results() -> None:
    predictor = RowPredictor(threads=1, delay_s=0.3)
    predictor.load_model()
    batcher = AdaptiveBatcher(predictor, max_batch_size=32, max_latency_ms=1)
    first = asyncio.create_task(batcher.submit({"x": rows(0)}, ["y"]))
    await asyncio.to_thread(predictor.started.wait, 30)  # the only slot is now busy
    queued = [asyncio.create_task(batcher.submit({"x": rows(i)}, ["y"])) for i in (1, 2, 3)]
    await asyncio.sleep(0.05)
    queued[1].cancel()  # cancelled while queued: must not be part of the next batch
    first.cancel()  # cancelled while its batch runs: the batch still completes
    results = await asyncio.gather(queued[0], queued[2])
    np.testing.assert_array_equal(results[0]["y"], 2 * rows(1) + 1)
    np.testing.assert_array_equal(results[1]["y"], 2 * rows(3) + 1)
    assert first.cancelled() and queued[1].cancelled()
    assert [c["x"] for c in predictor.calls] == [(1, 3), (2, 3)]
    # A cancelled caller mid-batch does not break the next round either.
    again = await batcher.submit({"x": rows(9)}, ["y"])
    np.testing.assert_array_equal(again["y"], 2 * rows(9) + 1)
    await batcher.close()


# ---- end to end: the scikit-learn predictor with --batching (it is off by default) -----------


@pytest.fixture(scope="module")
def batching_iris(tmp_path_factory: pytest.TempPathFactory):
    from tests.support.servers import ServerProcess, server_env

    tmp = tmp_path_factory.mktemp("iris-batching")
    server = ServerProcess(
        ["--batching", "--max-latency-ms", "50"], server_env(tmp), tmp / "server.log"
    ).start(timeout=120)
    yield server
    server.stop()


def batch_metric(url: str) -> tuple[float, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        for field in ("count", "sum"):
            if line.startswith(f"kninfer_batch_size_{field}{{") and 'model="iris"' in line:
                values[field] = float(line.rsplit(" ", 1)[1])
    return values.get("count", 0.0), values.get("sum", 0.0)


@pytest.mark.anyio
async def test_served_batching_keeps_rows_apart_and_isolates_bad_requests(
    batching_iris, iris_estimator
) -> None:
    rng = np.random.default_rng(3)
    samples = rng.uniform([4, 2, 1, 0.1], [8, 4.5, 7, 2.5], size=(32, 4)).round(1)
    count0, sum0 = batch_metric(batching_iris.url)

    def body(row: np.ndarray) -> dict[str, object]:
        return {
            "id": f"r{row[0]}",
            "inputs": [
                {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": row.tolist()}
            ],
            "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
        }

    bad = {
        "inputs": [
            {"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}
        ]
    }
    async with httpx.AsyncClient(base_url=batching_iris.url, timeout=60) as client:
        url = "/v2/models/iris/infer"
        replies = await asyncio.gather(
            *(client.post(url, json=body(row)) for row in samples),
            *(client.post(url, json=bad) for _ in range(4)),
        )
    for row, reply in zip(samples, replies[:32], strict=True):
        assert reply.status_code == 200, reply.text
        outputs = {o["name"]: o["data"] for o in reply.json()["outputs"]}
        assert outputs["predict"] == iris_estimator.predict(row[None, :]).tolist()
        np.testing.assert_allclose(
            outputs["predict_proba"], iris_estimator.predict_proba(row[None, :]).ravel()
        )
    for reply in replies[32:]:
        assert reply.status_code == 400
        assert reply.json() == {
            "error": "input 'input-0' has shape [1, 3]; expected [-1, 4] (-1 is any size)"
        }
    count1, sum1 = batch_metric(batching_iris.url)
    assert sum1 - sum0 == 32  # every good row went through the batcher exactly once
    assert count1 - count0 < 32  # and some of them shared a model call
