"""kninfer.observability against real servers: Prometheus counters by protocol, model
and status on /metrics, cold-start gauges, the JSON access log, W3C trace context carried to
reply events and through a transformer to its predictor, and /metrics across `--workers 2`."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent, from_http
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import ServerProcess, grpc_stub, served_version, server_env

REQUEST_TYPE = "dev.kninfer.inference.request"
ROW = [5.1, 3.5, 1.4, 0.2]
V2 = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("metrics")
    process = ServerProcess(["--access-log"], server_env(tmp), tmp / "server.log")
    process.start(timeout=180)
    yield process
    process.stop()


def scrape(url: str) -> Samples:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def ce(event_id: str, **extensions: str) -> CloudEvent:
    return CloudEvent(
        {
            "type": REQUEST_TYPE,
            "source": "tests/metrics",
            "id": event_id,
            "datacontenttype": "application/json",
            **extensions,
        },
        V2,
    )


def access_lines(server: ServerProcess, count: int, **match: Any) -> list[dict[str, Any]]:
    """JSON access-log lines matching all of `match`, waiting (bounded) for `count` of them."""
    deadline = time.monotonic() + 15
    while True:
        found = []
        text = server.log()
        # Whole lines only: the server may be writing the last one as we read.
        for line in text[: text.rfind("\n") + 1].splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if all(entry.get(k) == v for k, v in match.items()):
                    found.append(entry)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_rest_and_cloudevents_counted_by_protocol_model_and_status(server: ServerProcess) -> None:
    v = served_version(server)  # the model version label; "" for a model not served
    before = scrape(server.url)
    assert httpx.post(f"{server.url}/v2/models/iris/infer", json=V2).status_code == 200
    bad = {"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": ROW}]}
    reply = httpx.post(f"{server.url}/v2/models/iris/infer", json=bad)
    assert reply.status_code == 400
    assert reply.json() == {"error": "input 'input-0': 'data' has 4 values but shape needs 3"}
    assert (
        httpx.post(f"{server.url}/v1/models/iris:predict", json={"instances": [ROW]}).status_code
        == 200
    )
    # An unknown model is counted under "_unknown": URL text never becomes a label value.
    assert (
        httpx.post(f"{server.url}/v2/models/no-such-{uuid.uuid4().hex}/infer", json=V2).status_code
        == 404
    )
    headers, body = to_binary(ce(str(uuid.uuid4())))
    assert httpx.post(f"{server.url}/", headers=headers, content=body).status_code == 200
    after = scrape(server.url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "kninfer_requests_total"
    assert delta(requests, protocol="rest_v2", model="iris", version=v, status="200") == 1
    assert delta(requests, protocol="rest_v2", model="iris", version=v, status="400") == 1
    assert delta(requests, protocol="rest_v1", model="iris", version=v, status="200") == 1
    assert delta(requests, protocol="rest_v2", model="_unknown", version="", status="404") == 1
    assert delta(requests, protocol="cloudevents", model="iris", version=v, status="200") == 1
    errors = "kninfer_request_errors_total"
    assert delta(errors, protocol="rest_v2", model="iris", version=v, status="400") == 1
    assert delta(errors, protocol="rest_v2", model="_unknown", version="", status="404") == 1
    assert value(after, errors, protocol="rest_v2", model="iris", version=v, status="200") == 0
    assert (
        delta("kninfer_request_duration_seconds_count", protocol="rest_v2", model="iris", version=v)
        == 2
    )
    # KServe's own latency histogram still runs for every model call (V2, V1, CloudEvent).
    # (kninfer.predictors.base.Predictor.__call__ observes all three, as KServe's __call__ does.)
    for histogram in (
        "request_preprocess_seconds",
        "request_predict_seconds",
        "request_postprocess_seconds",
    ):
        assert delta(f"{histogram}_count", model_name="iris") == 3
    assert value(after, "kninfer_requests_in_flight", protocol="rest_v2") == 0


def test_grpc_infer_counted_with_grpc_status(server: ServerProcess) -> None:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP64", shape=[1, 4])
    tensor.contents.fp64_contents.extend(ROW)
    wrong = pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP64", shape=[1, 3])
    wrong.contents.fp64_contents.extend(ROW)
    before = scrape(server.url)
    with grpc_stub(server.grpc_target) as stub:
        traced = stub.ModelInfer(
            pb.ModelInferRequest(model_name="iris", inputs=[tensor]),
            metadata=[("traceparent", TRACE)],
        )
        assert traced.outputs[0].name == "predict"
        with pytest.raises(grpc.RpcError) as failed:
            stub.ModelInfer(pb.ModelInferRequest(model_name="iris", inputs=[wrong]))
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert stub.ServerLive(pb.ServerLiveRequest()).live  # not an inference: not counted
    after = scrape(server.url)
    name = "kninfer_requests_total"
    v = served_version(server)  # the model version label
    ok = dict(protocol="grpc_v2", model="iris", version=v, status="OK")
    invalid = dict(protocol="grpc_v2", model="iris", version=v, status="INVALID_ARGUMENT")
    assert value(after, name, **ok) - value(before, name, **ok) == 1
    assert value(after, name, **invalid) - value(before, name, **invalid) == 1
    errors = "kninfer_request_errors_total"
    assert value(after, errors, **invalid) - value(before, errors, **invalid) == 1
    assert value(after, errors, **ok) == 0
    assert value(after, "kninfer_requests_in_flight", protocol="grpc_v2") == 0


def test_cold_start_and_model_load_are_exported(server: ServerProcess) -> None:
    samples = scrape(server.url)
    assert value(samples, "kninfer_model_load_seconds", model="iris") > 0
    phases = {
        dict(labels)["phase"]: v
        for (name, labels), v in samples.items()
        if name == "kninfer_cold_start_seconds"
    }
    assert {"imports", "model_load", "warmup", "ready"} <= set(phases)
    assert phases["ready"] >= phases["model_load"] > 0
    # The same numbers are in the one `cold start {...}` log line.
    line = next(x for x in server.log().splitlines() if "cold start {" in x)
    logged = json.loads(line[line.index("{") :])
    assert phases["ready"] == pytest.approx(logged["ready_ms"] / 1000)
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    assert "# TYPE kninfer_batch_size histogram" in text


def test_one_json_access_log_line_per_request(server: ServerProcess) -> None:
    request_id = f"req-{uuid.uuid4().hex}"
    reply = httpx.post(
        f"{server.url}/v2/models/iris/infer",
        json=V2,
        headers={"x-request-id": request_id, "traceparent": TRACE, "x-forwarded-for": "10.0.3.7"},
    )
    assert reply.status_code == 200
    (line,) = access_lines(server, 1, request_id=request_id)
    assert {
        k: line[k]
        for k in (
            "method",
            "path",
            "status",
            "protocol",
            "model",
            "trace_id",
            "ce_id",
            "forwarded_for",
        )
    } == {
        "method": "POST",
        "path": "/v2/models/iris/infer",
        "status": 200,
        "protocol": "rest_v2",
        "model": "iris",
        "trace_id": TRACE.split("-")[1],
        "ce_id": None,
        "forwarded_for": "10.0.3.7",
    }
    assert line["client"].startswith("127.0.0.1:")  # the TCP peer, not rewritten
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0

    binary_id, structured_id = f"bin-{uuid.uuid4().hex}", f"str-{uuid.uuid4().hex}"
    headers, body = to_binary(ce(binary_id))
    assert httpx.post(f"{server.url}/", headers=headers, content=body).status_code == 200
    headers, body = to_structured(ce(structured_id))
    assert (
        httpx.post(f"{server.url}/v2/models/iris/infer", headers=headers, content=body).status_code
        == 200
    )
    (binary,) = access_lines(server, 1, ce_id=binary_id)
    (structured,) = access_lines(server, 1, ce_id=structured_id)
    assert (binary["protocol"], binary["model"], binary["status"], binary["request_id"]) == (
        "cloudevents",
        "iris",
        200,
        binary_id,
    )
    # Structured mode: the id is in the body; the events route hands it to the log.
    assert (structured["protocol"], structured["model"], structured["path"]) == (
        "cloudevents",
        "iris",
        "/v2/models/iris/infer",
    )

    bad = httpx.post(
        f"{server.url}/v2/models/iris/infer",
        content=b"{not json",
        headers={"x-request-id": f"{request_id}-bad"},
    )
    assert bad.status_code == 400
    (failed,) = access_lines(server, 1, request_id=f"{request_id}-bad")
    assert failed["status"] == 400


def test_reply_events_carry_the_trace_context(server: ServerProcess) -> None:
    # Binary mode with the HTTP traceparent header (what a Broker forwards).
    headers, body = to_binary(ce(str(uuid.uuid4())))
    reply = httpx.post(f"{server.url}/", headers={**headers, "traceparent": TRACE}, content=body)
    assert reply.status_code == 200
    assert reply.headers["ce-traceparent"] == TRACE
    # Structured mode with the trace only in the event (distributed-tracing extension).
    other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers, body = to_structured(ce(str(uuid.uuid4()), traceparent=other))
    reply = httpx.post(f"{server.url}/", headers=headers, content=body)
    assert reply.status_code == 200
    assert from_http(dict(reply.headers), reply.content)["traceparent"] == other
    # No trace at all: the reply starts one (valid version-00 header, unsampled).
    headers, body = to_binary(ce(str(uuid.uuid4())))
    fresh = httpx.post(f"{server.url}/", headers=headers, content=body).headers["ce-traceparent"]
    version, trace_id, parent, flags = fresh.split("-")
    assert (version, len(trace_id), len(parent), flags) == ("00", 32, 16, "00")


def test_traceparent_reaches_the_predictor_through_a_transformer(
    server: ServerProcess, start_server: Any
) -> None:
    transformer = start_server(
        "--transformer",
        "passthrough",
        "--predictor-host",
        f"127.0.0.1:{server.http_port}",
        "--model-name",
        "iris",
        timeout=180,
    )
    trace = f"00-{uuid.uuid4().hex}-00f067aa0ba902b7-01"
    reply = httpx.post(
        f"{transformer.url}/v2/models/iris/infer",
        json=V2,
        headers={"traceparent": trace},
        timeout=60,
    )
    assert reply.status_code == 200
    (line,) = access_lines(server, 1, trace_id=trace.split("-")[1])
    assert (line["path"], line["status"], line["protocol"]) == (
        "/v2/models/iris/infer",
        200,
        "rest_v2",
    )


def test_metrics_add_up_across_workers(start_server: Any) -> None:
    multi = start_server("--workers", "2", timeout=180)
    for _ in range(20):  # a new connection each time: SO_REUSEPORT spreads them over workers
        assert (
            httpx.post(f"{multi.url}/v2/models/iris/infer", json=V2, timeout=60).status_code == 200
        )
    samples = scrape(multi.url)
    assert (
        value(
            samples,
            "kninfer_requests_total",
            protocol="rest_v2",
            model="iris",
            version=served_version(multi),
            status="200",
        )
        == 20
    )
    assert value(samples, "request_predict_seconds_count", model_name="iris") == 20


def test_garbage_collection_runs_while_serving(tmp_path: Path) -> None:
    """kninfer.cli turns the cyclic GC off for start-up only: serving collects again.

    On asyncio's own loop (`--event-loop asyncio`): a closed connection's protocol objects form
    reference cycles only the cyclic GC frees, so generation 0 fills (~1 collection per 100
    connections here). uvloop's connections leave no such cycles to count collections by; the
    GC switch is the same for both loops (kninfer.server.startup)."""
    server = ServerProcess(
        [], server_env(tmp_path, KNINFER_EVENT_LOOP="asyncio"), tmp_path / "server.log"
    ).start(timeout=180)
    try:
        before = value(scrape(server.url), "python_gc_collections_total", generation="0")
        for _ in range(600):  # a new connection each time
            assert httpx.post(f"{server.url}/v2/models/iris/infer", json=V2).status_code == 200
        after = value(scrape(server.url), "python_gc_collections_total", generation="0")
        assert after > before
    finally:
        server.stop()
