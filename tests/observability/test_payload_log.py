"""Payload logging (`kninfer serve --logger-url`, kninfer.observability.payload_log) against real
processes: a real `kninfer serve` (the embedded iris model) sends its events to a CloudEvents
receiver of the test's own (http.server on 127.0.0.1, each POST parsed by the CloudEvents SDK's
`from_http`). Every transport logs one request and one response event per inference, in KServe's
logger format with kninfer's fixes; a sink that is down, slow or failing never delays or fails an
inference; queued events are flushed on SIGTERM within the grace period; `kninfer render` passes
the flags. The logger off imports nothing of it."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from cloudevents.http import from_http
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from prometheus_client.parser import text_string_to_metric_families

from kninfer.deploy.config import DeployConfig
from kninfer.deploy.render import knative_documents, kserve_documents
from kninfer.observability.payload_log import (
    canonical_header,
    flush_budget,
    inference_service_of,
)
from tests.support.paths import ROOT
from tests.support.servers import ServerProcess, free_port, grpc_stub, served_version, server_env

ROW = [5.1, 3.5, 1.4, 0.2]
V2 = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
V1 = {"instances": [ROW]}
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_GRPC = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE_EVENT = "00-11112222333344445555666677778888-1111222233334444-01"
TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
REQUEST_TYPE = "org.kubeflow.serving.inference.request"  # KServe's (pkg/logger/worker.go)
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
KSERVE_EXTENSIONS = ("inferenceservicename", "namespace", "component", "endpoint", "metadata")
NAMESPACE = "ml"


# ---- the receiver ---------------------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    event: Any  # cloudevents.http.CloudEvent

    def __getitem__(self, name: str) -> Any:
        return self.event[name]

    @property
    def test_id(self) -> str:
        return str(json.loads(self.event["metadata"]).get("X-Test-Id", [""])[0])


class Sink:
    """A CloudEvents receiver on 127.0.0.1: `ok` answers 202 after `delay` seconds, `slow`
    after 10 s, `failing` answers 500. Events it accepts are parsed with `from_http` and kept."""

    def __init__(self, behaviour: str = "ok", delay: float = 0.0) -> None:
        self.received: list[Received] = []
        self.posts = 0
        lock = self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with lock:
                    sink.posts += 1
                if behaviour == "slow":
                    time.sleep(10)
                elif delay:
                    time.sleep(delay)
                if behaviour == "failing":
                    self.send_response(500)
                else:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    event = from_http(headers, body)
                    with lock:
                        sink.received.append(Received(headers, event))
                    self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True  # a `slow` answer is abandoned at close
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def events(self, prefix: str = "") -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.test_id.startswith(prefix)]

    def wait_for(self, count: int, prefix: str = "", timeout: float = 20.0) -> list[Received]:
        """The events whose X-Test-Id starts with `prefix`, once `count` have arrived, and after
        a short quiet time (so an extra one would be seen)."""
        deadline = time.monotonic() + timeout
        while len(self.events(prefix)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        return self.events(prefix)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pair(events: list[Received], test_id: str) -> tuple[Received, Received]:
    """The one request and the one response event of an inference."""
    mine = [e for e in events if e.test_id == test_id]
    assert sorted(e["type"] for e in mine) == [REQUEST_TYPE, RESPONSE_TYPE], (test_id, mine)
    request = next(e for e in mine if e["type"] == REQUEST_TYPE)
    response = next(e for e in mine if e["type"] == RESPONSE_TYPE)
    return request, response


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    samples = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=30).text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


# ---- one server logging to one receiver --------------------------------------------------------


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    receiver = Sink()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def server(sink: Sink, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("payload-log")
    # Header names in another letter case than the requests send them.
    process = ServerProcess(
        [
            "--logger-url",
            sink.url,
            "--logger-headers",
            "X-TEST-ID, x-Tenant",
            "--logger-namespace",
            NAMESPACE,
        ],
        server_env(tmp),
        tmp / "server.log",
    )
    process.start(timeout=180)
    yield process
    process.stop()


def check_pair(
    request: Received, response: Received, server: ServerProcess, status: int = 200
) -> None:
    """The attributes a KServe logger consumer reads, and kninfer's additions."""
    for event in (request, response):
        assert event.headers["ce-specversion"] == "1.0"  # binary content mode
        assert event.headers["content-type"] == "application/json"
        assert event["datacontenttype"] == "application/json"
        for name in KSERVE_EXTENSIONS:
            assert name in event.event.get_attributes(), name
        assert event["inferenceservicename"] == "iris"  # no K_SERVICE: the model's name
        assert event["namespace"] == NAMESPACE
        assert event["component"] == "predictor"
        assert event["endpoint"] == ""  # as KServe 0.20 sends it: no reconciler sets the label
        assert event["source"] == "kninfer/local/models/iris"
        assert event["modelname"] == "iris"
        assert event["modelversion"] == served_version(server)
        assert "revision" not in event.event.get_attributes()  # no K_REVISION: not on Knative
        assert TRACEPARENT.match(event["traceparent"])
    assert request["id"] != response["id"]
    assert request["requestid"] == response["requestid"] == request["id"]
    assert response["id"] == request["id"] + "-response"
    assert request["traceparent"] == response["traceparent"]
    assert "statuscode" not in request.event.get_attributes()
    assert response["statuscode"] == str(status)
    assert request["time"] <= response["time"]


# ---- every transport ------------------------------------------------------------------------


def test_every_transport_logs_one_request_and_one_response_event(
    server: ServerProcess, sink: Sink
) -> None:
    url = server.url
    answers: dict[str, Any] = {}
    # Every field of the V2 request object (required_api.md) comes back in the log.
    full = {"id": "rest-1", "parameters": {"note": "x"}, **V2, "outputs": [{"name": "predict"}]}
    answers["v2"] = httpx.post(
        f"{url}/v2/models/iris/infer",
        json=full,
        headers={"x-test-id": "t-v2", "traceparent": TRACE, "X-Tenant": "acme"},
    ).json()
    assert answers["v2"]["id"] == "rest-1"
    # The binary tensor data extension: logged as V2 JSON, the data inline.
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, 4],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 32},
                }
            ]
        }
    ).encode()
    answers["binary"] = httpx.post(
        f"{url}/v2/models/iris/infer",
        content=header + struct.pack("<4d", *ROW),
        headers={
            "inference-header-content-length": str(len(header)),
            "content-type": "application/octet-stream",
            "x-test-id": "t-binary",
        },
    ).json()
    answers["v1"] = httpx.post(
        f"{url}/v1/models/iris:predict", json=V1, headers={"x-test-id": "t-v1"}
    ).json()
    answers["mlflow"] = httpx.post(
        f"{url}/invocations", json=V1, headers={"x-test-id": "t-mlflow"}
    ).json()
    reply = httpx.post(
        f"{url}/",
        json=V2,
        headers={
            "ce-specversion": "1.0",
            "ce-id": "event-1",
            "ce-source": "tests/payload-log",
            "ce-type": "dev.kninfer.inference.request",
            "ce-traceparent": TRACE_EVENT,
            "x-test-id": "t-event",
        },
    )
    assert reply.status_code == 200, reply.text
    answers["event"] = reply.json()
    with grpc_stub(server.grpc_target) as stub:
        tensor = pb.ModelInferRequest.InferInputTensor(
            name="input-0",
            datatype="FP64",
            shape=[1, 4],
            contents=pb.InferTensorContents(fp64_contents=ROW),
        )
        grpc_answer = stub.ModelInfer(
            pb.ModelInferRequest(model_name="iris", id="grpc-1", inputs=[tensor]),
            metadata=(("x-test-id", "t-grpc"), ("traceparent", TRACE_GRPC)),
            timeout=30,
        )
        raw = pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP64", shape=[1, 4])
        stub.ModelInfer(
            pb.ModelInferRequest(
                model_name="iris", inputs=[raw], raw_input_contents=[struct.pack("<4d", *ROW)]
            ),
            metadata=(("x-test-id", "t-grpcraw"),),
            timeout=30,
        )

    events = sink.wait_for(14, prefix="t-")
    assert len(events) == 14, [e.test_id for e in events]
    logged = {
        name: pair(events, f"t-{name}")
        for name in ("v2", "binary", "v1", "mlflow", "event", "grpc", "grpcraw")
    }
    for request, response in logged.values():
        check_pair(request, response, server)
    assert len({e["id"] for e in events}) == 14

    # Bodies: the request as the model got it (V2 JSON for every V2 transport), the answer sent.
    assert logged["v2"][0].event.data == full
    assert logged["v2"][1].event.data == answers["v2"]
    assert logged["grpcraw"][0].event.data == V2
    for name in ("binary", "event"):
        request, response = logged[name]
        assert request.event.data == V2, name
        assert response.event.data == answers[name], name
    for name in ("v1", "mlflow"):
        request, response = logged[name]
        assert request.event.data == V1, name
        assert response.event.data == answers[name] == {"predictions": [0]}, name
    request, response = logged["grpc"]
    assert request.event.data == {"id": "grpc-1", **V2}
    (output,) = grpc_answer.outputs
    data = np.frombuffer(grpc_answer.raw_output_contents[0], "<i8").tolist()
    assert response.event.data == {
        "model_name": grpc_answer.model_name,
        "model_version": grpc_answer.model_version,
        "id": "grpc-1",
        "outputs": [
            {
                "name": output.name,
                "datatype": output.datatype,
                "shape": list(output.shape),
                "data": data,
            }
        ],
    }

    # Trace context: the client's, wherever it came in (header, gRPC metadata, event extension).
    assert logged["v2"][0]["traceparent"] == TRACE
    assert logged["grpc"][0]["traceparent"] == TRACE_GRPC
    assert logged["event"][0]["traceparent"] == TRACE_EVENT
    # Allow-listed headers, matched in any letter case, under Go's canonical names (as KServe's).
    assert json.loads(logged["v2"][0]["metadata"]) == {"X-Test-Id": ["t-v2"], "X-Tenant": ["acme"]}
    assert json.loads(logged["v1"][1]["metadata"]) == {"X-Test-Id": ["t-v1"]}


def test_model_errors_are_logged_with_their_status_and_refusals_before_it_are_not(
    server: ServerProcess, sink: Sink
) -> None:
    url = server.url
    wrong_input = {"inputs": [{**V2["inputs"][0], "name": "nope"}]}
    answer = httpx.post(
        f"{url}/v2/models/iris/infer", json=wrong_input, headers={"x-test-id": "e-model"}
    )
    assert answer.status_code == 400
    # Refused before the data plane: not JSON (400), an unknown model (404).
    assert (
        httpx.post(
            f"{url}/v2/models/iris/infer", content=b"{not json", headers={"x-test-id": "e-json"}
        ).status_code
        == 400
    )
    assert (
        httpx.post(
            f"{url}/v2/models/nope/infer", json=V2, headers={"x-test-id": "e-unknown"}
        ).status_code
        == 404
    )
    with grpc_stub(server.grpc_target) as stub:
        tensor = pb.ModelInferRequest.InferInputTensor(
            name="nope",
            datatype="FP64",
            shape=[1, 4],
            contents=pb.InferTensorContents(fp64_contents=ROW),
        )
        with pytest.raises(Exception, match="INVALID_ARGUMENT"):
            stub.ModelInfer(
                pb.ModelInferRequest(model_name="iris", inputs=[tensor]),
                metadata=(("x-test-id", "e-grpc"),),
                timeout=30,
            )

    events = sink.wait_for(4, prefix="e-")
    assert sorted(e.test_id for e in events) == ["e-grpc", "e-grpc", "e-model", "e-model"]
    request, response = pair(events, "e-model")
    check_pair(request, response, server, status=400)
    assert request.event.data == wrong_input
    assert (
        response.event.data
        == answer.json()
        == {"error": "unknown input 'nope'; model 'iris' takes input-0"}
    )
    request, response = pair(events, "e-grpc")
    check_pair(request, response, server, status=400)
    assert response.event.data == answer.json()


def test_counts_match_exactly_under_bounded_load(server: ServerProcess, sink: Sink) -> None:
    def call(n: int) -> int:
        headers = {"x-test-id": f"load-{n}"}
        if n % 2:
            return httpx.post(
                f"{server.url}/v1/models/iris:predict", json=V1, headers=headers, timeout=30
            ).status_code
        return httpx.post(
            f"{server.url}/v2/models/iris/infer", json=V2, headers=headers, timeout=30
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(call, range(200)))
    assert statuses == [200] * 200
    events = sink.wait_for(400, prefix="load-", timeout=60)
    assert len(events) == 400
    assert len({e["id"] for e in events}) == 400
    for n in range(200):
        request, response = pair(events, f"load-{n}")
        assert response["id"] == request["id"] + "-response"
        assert response["requestid"] == request["requestid"]
    assert value(scrape(server.url), "kninfer_payload_log_dropped_total") == 0


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


# ---- a sink that is down, slow or failing -----------------------------------------------------


@pytest.mark.parametrize("behaviour", ["down", "slow", "failing"])
def test_a_bad_sink_never_delays_or_fails_an_inference(behaviour: str, tmp_path: Path) -> None:
    bad = None if behaviour == "down" else Sink(behaviour)
    url = f"http://127.0.0.1:{free_port()}/" if bad is None else bad.url  # down: nothing listens
    grace = 2.0
    server = ServerProcess(
        [
            "--logger-url",
            url,
            "--logger-queue-size",
            "8",
            "--grace-period-s",
            str(grace),
            "--drain-window-s",
            "0.2",
        ],
        server_env(tmp_path),
        tmp_path / "server.log",
    )
    try:
        server.start(timeout=180)
        started = time.monotonic()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for n in range(60):
                sent = time.monotonic()
                answer = client.post("/v2/models/iris/infer", json=V2)
                took = time.monotonic() - sent
                assert answer.status_code == 200, answer.text
                # The sink would take 10 s (slow) or ~1 s of retries (down, failing) per event.
                assert took < 1.0, (n, took)
        dropped = {
            dict(labels)["reason"]: v
            for (name, labels), v in scrape(server.url).items()
            if name == "kninfer_payload_log_dropped_total"
        }
        assert dropped["queue_full"] > 0, dropped
        if bad is not None:
            assert bad.posts > 0  # it was tried
            assert bad.received == [] or behaviour == "slow"
        # Drops are logged at a bounded rate: at most one line per 10 s, with the count.
        lines = [line for line in server.log().splitlines() if "payload log: dropped" in line]
        assert 1 <= len(lines) <= 2 + (time.monotonic() - started) // 10, lines
        assert re.search(r"queue_full \d+", lines[0])

        # SIGTERM: what is still queued gets at most min(5 s, grace / 2), then is dropped.
        assert server.process is not None
        signalled = time.monotonic()
        server.signal()
        assert server.process.wait(30) == 0
        assert time.monotonic() - signalled < grace + 3
        assert "shutdown" in server.log().rsplit("received SIGTERM", 1)[1]
    finally:
        server.stop()
        if bad is not None:
            bad.close()


def test_queued_events_are_flushed_on_sigterm_and_k_sink_is_the_default_url(tmp_path: Path) -> None:
    sink = Sink(delay=0.3)  # 4 senders: about 13 events a second
    # K_SINK, as a Knative SinkBinding sets it, instead of --logger-url; K_SERVICE and
    # K_REVISION as Knative Serving sets them.
    server = ServerProcess(
        ["--drain-window-s", "0.2"],
        server_env(
            tmp_path, K_SINK=sink.url, K_SERVICE="iris-predictor", K_REVISION="iris-predictor-00002"
        ),
        tmp_path / "server.log",
    )
    try:
        server.start(timeout=180)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for n in range(20):
                assert (
                    client.post(
                        "/v2/models/iris/infer", json=V2, headers={"x-request-id": f"f-{n}"}
                    ).status_code
                    == 200
                )
        assert len(sink.events()) < 40  # still queued when the signal comes
        assert server.process is not None
        server.signal()
        assert server.process.wait(30) == 0
        assert len(sink.events()) == 40
        assert "payload log: dropped" not in server.log()
        for event in sink.events():
            assert event["revision"] == "iris-predictor-00002"
            assert event["inferenceservicename"] == "iris"
            assert event["source"] == "kninfer/iris-predictor/models/iris"
    finally:
        server.stop()
        sink.close()


# ---- off ------------------------------------------------------------------------------------


def test_logger_off_imports_and_registers_nothing(iris_server: ServerProcess) -> None:
    assert "kninfer_payload_log" not in httpx.get(f"{iris_server.url}/metrics").text
    code = (
        "import sys\n"
        "import kninfer.server.lifecycle, kninfer.http.app, kninfer.grpc.servicer\n"
        "from kninfer.dataplane import DataPlane\n"
        "assert DataPlane(None).payload_log is None\n"
        "assert 'kninfer.observability.payload_log' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


# ---- pure parts -----------------------------------------------------------------------------


def test_names_headers_and_flush_budget() -> None:
    assert inference_service_of("iris-predictor", "flowers") == "iris"
    assert inference_service_of("iris-transformer", "flowers") == "iris"
    assert inference_service_of("scorer", "flowers") == "scorer"
    assert inference_service_of(None, "flowers") == "flowers"
    assert canonical_header("x-request-id") == "X-Request-Id"
    assert canonical_header("X-TENANT") == "X-Tenant"
    assert flush_budget(30, None) == 5.0
    assert flush_budget(4, None) == 2.0  # half the grace period
    assert flush_budget(30, 27.5) == 2.5  # never past its end
    assert flush_budget(30, 31) == 0.0


def test_k_sink_is_read_and_the_flag_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from kninfer.settings import ServeSettings

    monkeypatch.setenv("K_SINK", "http://broker-ingress.knative-eventing.svc.cluster.local/a/b")
    assert ServeSettings(cache_dir=tmp_path).logger_url.endswith("/a/b")  # type: ignore[union-attr]
    assert ServeSettings(cache_dir=tmp_path, logger_url="http://x/").logger_url == "http://x/"
    monkeypatch.delenv("K_SINK")
    assert ServeSettings(cache_dir=tmp_path).logger_url is None


# ---- kninfer render ---------------------------------------------------------------------------


def config(**values: object) -> DeployConfig:
    return DeployConfig.model_validate({"name": "iris", "namespace": NAMESPACE, **values})


def serve_settings(args: list[str]) -> Any:
    from kninfer.cli import build_parser
    from kninfer.settings import ServeSettings

    options = build_parser().parse_args(args)
    return ServeSettings(
        **{k: v for k, v in vars(options).items() if k not in ("command", "handler")}
    )


def test_render_passes_the_logger_flags_with_the_namespace_broker_by_default() -> None:
    broker = "http://broker-ingress.knative-eventing.svc.cluster.local"
    (service,) = knative_documents(config(logger={}))
    args = service["spec"]["template"]["spec"]["containers"][0]["args"]
    settings = serve_settings(args)
    assert (settings.logger_url, settings.logger_namespace, settings.logger_mode) == (
        f"{broker}/{NAMESPACE}/default",
        NAMESPACE,
        "all",
    )
    (isvc,) = kserve_documents(
        config(
            logger={"mode": "response", "headers": ["X-Request-Id"]}, eventing={"broker": "events"}
        )
    )
    args = isvc["spec"]["predictor"]["containers"][0]["args"]
    settings = serve_settings(args)
    assert (settings.logger_url, settings.logger_mode, settings.logger_headers) == (
        f"{broker}/{NAMESPACE}/events",
        "response",
        "X-Request-Id",
    )
    (service,) = knative_documents(config(logger={"url": "http://sink.ml/"}))
    assert (
        serve_settings(service["spec"]["template"]["spec"]["containers"][0]["args"]).logger_url
        == "http://sink.ml/"
    )
    (service,) = knative_documents(config())
    assert "--logger-url" not in service["spec"]["template"]["spec"]["containers"][0]["args"]


def test_render_puts_the_logger_flags_on_the_isvc_not_the_shared_runtime() -> None:
    runtime, isvc = kserve_documents(config(storage_uri="gs://b/iris", kserve="runtime", logger={}))
    assert "--logger-url" not in runtime["spec"]["containers"][0]["args"]
    assert isvc["spec"]["predictor"]["model"]["args"] == [
        "--logger-url",
        f"http://broker-ingress.knative-eventing.svc.cluster.local/{NAMESPACE}/default",
        "--logger-namespace",
        NAMESPACE,
    ]


def test_render_refuses_a_logger_url_that_is_not_http() -> None:
    with pytest.raises(ValueError, match="logger.url"):
        config(logger={"url": "kafka://topic"})
