"""OpenTelemetry traces (docs/observability.md, "Traces"), exported by real `kninfer serve`
processes to a real OTLP/HTTP receiver: an HTTP server in this test that takes
`POST /v1/traces` (application/x-protobuf), decodes each body as the collector does
(`ExportTraceServiceRequest`, opentelemetry-proto) and keeps the spans.

Checked for V2 REST, V1, gRPC and a CloudEvent: the request span and its children, their parent
ids, the incoming trace kept, the answer's traceparent naming the request span; for a
transformer in front of a predictor, the predictor's request span under the transformer's
client span, in one trace; the sampler (always_off: no spans); and that with tracing off the
server never imports opentelemetry.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from tests.support.paths import ROOT
from tests.support.servers import ServerProcess, free_port, grpc_stub, server_env

otlp = pytest.importorskip(
    "opentelemetry.proto.collector.trace.v1.trace_service_pb2",
    reason="opentelemetry-proto is not installed (the otel extra)",
)
pytest.importorskip(
    "opentelemetry.exporter.otlp.proto.http", reason="the otel extra is not installed"
)

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
FIELDS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
V2_BODY = {
    "inputs": [
        {
            "name": "input-0",
            "shape": [2, 4],
            "datatype": "FP64",
            "data": [v for row in ROWS for v in row],
        }
    ]
}
SERVER, CLIENT = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind
STATUS_ERROR = 2  # Status.StatusCode


# ---- the receiver -----------------------------------------------------------------------------


@dataclass
class Span:
    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    status: int
    links: list[tuple[str, str]]


def _value(any_value: Any) -> Any:
    return (
        getattr(any_value, any_value.WhichOneof("value")) if any_value.WhichOneof("value") else None
    )


@dataclass
class Receiver:
    """An OTLP/HTTP trace receiver (OTLP specification, "OTLP/HTTP"), and a payload-log sink
    (any other POST, answered 202)."""

    port: int = field(default_factory=free_port)
    spans: list[Span] = field(default_factory=list)
    exports: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def take(self, body: bytes) -> None:
        request = otlp.ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self.lock:
            self.exports += 1
            for resource_spans in request.resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(
                            Span(
                                str(resource.get("service.name")),
                                span.trace_id.hex(),
                                span.span_id.hex(),
                                span.parent_span_id.hex(),
                                span.name,
                                span.kind,
                                {a.key: _value(a.value) for a in span.attributes},
                                span.status.code,
                                [(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                            )
                        )

    def trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def wait_for(
        self, trace_id: str, done: Callable[[list[Span]], bool], timeout: float = 20.0
    ) -> list[Span]:
        deadline = time.monotonic() + timeout
        while True:
            spans = self.trace(trace_id)
            if done(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.05)

    @contextlib.contextmanager
    def running(self) -> Iterator[Receiver]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path != "/v1/traces":  # the payload-log sink
                    self.send_response(202)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                assert self.headers.get("content-type") == "application/x-protobuf"
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.take(body)
                answer = otlp.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()


# ---- the servers ------------------------------------------------------------------------------


def otel_env(tmp: Path, receiver: Receiver, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in server_env(tmp).items() if not k.startswith("OTEL_")}
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="100")
    env.update(extra)
    return env


@dataclass
class Stack:
    receiver: Receiver
    predictor: ServerProcess
    transformer: ServerProcess


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The iris predictor (adaptive batching and payload logging on, so its `queue` and
    `payload log` spans show) and the iris transformer in front of it, both tracing."""
    tmp = tmp_path_factory.mktemp("otel")
    with Receiver().running() as receiver:
        predictor = ServerProcess(
            ["--batching", "--logger-url", f"{receiver.endpoint}/sink"],
            otel_env(tmp, receiver, OTEL_SERVICE_NAME="iris-predictor"),
            tmp / "predictor.log",
        )
        predictor.start(wait=False)
        transformer = ServerProcess(
            [
                "--transformer",
                "iris",
                "--predictor-host",
                f"127.0.0.1:{predictor.http_port}",
                "--predictor-protocol",
                "v2",
            ],
            otel_env(tmp, receiver),
            tmp / "transformer.log",
        )
        transformer.start(wait=False)
        try:
            predictor.wait_ready(120)
            transformer.wait_ready(120)
            yield Stack(receiver, predictor, transformer)
        finally:
            predictor.stop()
            transformer.stop()


def new_trace() -> tuple[str, str, str]:
    """(trace id, span id, traceparent) of a sampled caller."""
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def named(spans: list[Span], name: str) -> Span:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def children(spans: list[Span], parent: Span) -> list[str]:
    return sorted(s.name for s in spans if s.parent_id == parent.span_id)


def names_of(traceparent: str) -> tuple[str, str]:
    """(trace id, span id) a traceparent names."""
    _, trace_id, span_id, _ = traceparent.split("-")
    return trace_id, span_id


# ---- the tests --------------------------------------------------------------------------------


def test_v2_rest_request_span_and_children(stack: Stack) -> None:
    trace_id, caller, traceparent = new_trace()
    answer = httpx.post(
        f"{stack.predictor.url}/v2/models/iris/infer",
        json=V2_BODY,
        headers={"traceparent": traceparent},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    spans = stack.receiver.wait_for(
        trace_id, lambda s: len([x for x in s if x.name == "payload log"]) == 2
    )
    request = named(spans, "POST /v2/models/{name}/infer")
    assert request.kind == SERVER and request.service == "iris-predictor"
    assert request.parent_id == caller  # the incoming traceparent's span
    assert children(spans, request) == [
        "decode",
        "encode",
        "payload log",
        "payload log",
        "predict",
        "queue",
    ]
    attributes = request.attributes
    assert attributes["http.request.method"] == "POST"
    assert attributes["url.path"] == "/v2/models/iris/infer"
    assert attributes["http.route"] == "/v2/models/{name}/infer"
    assert attributes["http.response.status_code"] == 200
    assert attributes["kninfer.model"] == "iris"
    assert attributes["kninfer.model_version"] == answer.json()["model_version"]
    assert request.status != STATUS_ERROR
    assert named(spans, "predict").attributes["kninfer.batch_rows"] >= 2
    events = sorted(
        s.attributes["cloudevents.event_type"] for s in spans if s.name == "payload log"
    )
    assert events == [
        "org.kubeflow.serving.inference.request",
        "org.kubeflow.serving.inference.response",
    ]
    # The answer names the request span.
    assert names_of(answer.headers["traceparent"]) == (trace_id, request.span_id)


def test_a_request_without_traceparent_starts_a_trace(stack: Stack) -> None:
    answer = httpx.post(f"{stack.predictor.url}/v2/models/iris/infer", json=V2_BODY, timeout=30)
    assert answer.status_code == 200
    trace_id, span_id = names_of(answer.headers["traceparent"])
    spans = stack.receiver.wait_for(trace_id, lambda s: any(x.span_id == span_id for x in s))
    request = named(spans, "POST /v2/models/{name}/infer")
    assert (request.span_id, request.parent_id) == (span_id, "")


def test_v1_request_span_and_children(stack: Stack) -> None:
    trace_id, caller, traceparent = new_trace()
    answer = httpx.post(
        f"{stack.predictor.url}/v1/models/iris:predict",
        json={"instances": ROWS},
        headers={"traceparent": traceparent},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    spans = stack.receiver.wait_for(trace_id, lambda s: len(s) >= 7)
    request = named(spans, "POST /v1/models/{name}:predict")
    assert request.parent_id == caller
    assert request.attributes["http.route"] == "/v1/models/{name}:predict"
    assert children(spans, request) == [
        "decode",
        "encode",
        "payload log",
        "payload log",
        "predict",
        "queue",
    ]
    assert names_of(answer.headers["traceparent"]) == (trace_id, request.span_id)


def grpc_request(model: str = "iris") -> Any:
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="input-0", datatype="FP64", shape=[len(ROWS), 4]
    )
    tensor.contents.fp64_contents.extend(v for row in ROWS for v in row)
    return pb.ModelInferRequest(model_name=model, inputs=[tensor])


def test_grpc_request_span_and_children(stack: Stack) -> None:
    trace_id, caller, traceparent = new_trace()
    with grpc_stub(stack.predictor.grpc_target) as stub:
        _, call = stub.ModelInfer.with_call(
            grpc_request(), metadata=(("traceparent", traceparent),)
        )
    spans = stack.receiver.wait_for(trace_id, lambda s: len(s) >= 7)
    request = named(spans, "inference.GRPCInferenceService/ModelInfer")
    assert request.kind == SERVER and request.parent_id == caller
    assert request.attributes["rpc.system"] == "grpc"
    assert request.attributes["rpc.method"] == "ModelInfer"
    assert request.attributes["rpc.grpc.status_code"] == "OK"
    assert request.attributes["kninfer.model"] == "iris"
    assert children(spans, request) == [
        "decode",
        "encode",
        "payload log",
        "payload log",
        "predict",
        "queue",
    ]
    trailing = dict(call.trailing_metadata() or ())
    assert names_of(trailing["traceparent"]) == (trace_id, request.span_id)


def test_grpc_error_marks_the_span(stack: Stack) -> None:
    import grpc

    trace_id, _, traceparent = new_trace()
    with grpc_stub(stack.predictor.grpc_target) as stub, pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(grpc_request("nope"), metadata=(("traceparent", traceparent),))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    spans = stack.receiver.wait_for(trace_id, lambda s: len(s) >= 1)
    request = named(spans, "inference.GRPCInferenceService/ModelInfer")
    assert request.status == STATUS_ERROR
    assert request.attributes["rpc.grpc.status_code"] == "NOT_FOUND"


def test_cloudevent_joins_the_events_trace(stack: Stack) -> None:
    """Binary mode, the trace only in the event's `traceparent` extension (as a Broker may
    deliver it): the request span is its child, and the reply event names the request span."""
    trace_id, caller, traceparent = new_trace()
    event_id = str(uuid.uuid4())
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "tests/otel",
        "ce-type": "dev.kninfer.inference.request",
        "ce-traceparent": traceparent,
        "content-type": "application/json",
    }
    answer = httpx.post(
        f"{stack.predictor.url}/", content=json.dumps(V2_BODY), headers=headers, timeout=30
    )
    assert answer.status_code == 200, answer.text
    spans = stack.receiver.wait_for(trace_id, lambda s: len(s) >= 7)
    request = named(spans, "POST /")
    assert request.parent_id == caller
    assert request.attributes["kninfer.protocol"] == "cloudevents"
    assert request.attributes["cloudevents.event_id"] == event_id
    assert request.attributes["cloudevents.event_type"] == "dev.kninfer.inference.request"
    assert children(spans, request) == [
        "decode",
        "event reply",
        "payload log",
        "payload log",
        "predict",
        "queue",
    ]
    assert names_of(answer.headers["ce-traceparent"]) == (trace_id, request.span_id)


def test_structured_cloudevent_links_its_trace(stack: Stack) -> None:
    """Structured mode: the event's traceparent is in the body, read after the request span
    began, so it is a link."""
    trace_id, caller, traceparent = new_trace()
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "tests/otel",
        "type": "dev.kninfer.inference.request",
        "traceparent": traceparent,
        "datacontenttype": "application/json",
        "data": V2_BODY,
    }
    answer = httpx.post(
        f"{stack.predictor.url}/",
        content=json.dumps(event),
        headers={"content-type": "application/cloudevents+json"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    reply_trace, request_id = names_of(answer.json()["traceparent"])
    spans = stack.receiver.wait_for(reply_trace, lambda s: len(s) >= 7)
    request = named(spans, "POST /")
    assert request.span_id == request_id
    assert (trace_id, caller) in request.links


def test_transformer_call_is_the_predictors_parent(stack: Stack) -> None:
    trace_id, caller, traceparent = new_trace()
    answer = httpx.post(
        f"{stack.transformer.url}/v2/models/iris/infer",
        json={
            "inputs": [
                {
                    "name": "records",
                    "shape": [len(ROWS)],
                    "datatype": "BYTES",
                    "data": [json.dumps(dict(zip(FIELDS, row, strict=True))) for row in ROWS],
                }
            ]
        },
        headers={"traceparent": traceparent},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    spans = stack.receiver.wait_for(trace_id, lambda s: len(s) >= 12)
    servers = [s for s in spans if s.name == "POST /v2/models/{name}/infer"]
    assert len(servers) == 2, [(s.name, s.service) for s in spans]
    front = next(s for s in servers if s.parent_id == caller)
    back = next(s for s in servers if s is not front)
    call = named(spans, "predictor call")
    assert call.kind == CLIENT and call.parent_id == front.span_id
    assert call.attributes["server.port"] == stack.predictor.http_port
    assert back.parent_id == call.span_id  # the predictor's request span, in the same trace
    assert front.service == "iris" and back.service == "iris-predictor"
    assert "predictor call" in children(spans, front)
    assert children(spans, back)[:2] == ["decode", "encode"]
    assert names_of(answer.headers["traceparent"]) == (trace_id, front.span_id)


# ---- the sampler, and tracing off -------------------------------------------------------------


def test_sampler_always_off_exports_no_spans(tmp_path: Path) -> None:
    with Receiver().running() as receiver:
        server = ServerProcess(
            [],
            otel_env(tmp_path, receiver, OTEL_TRACES_SAMPLER="always_off"),
            tmp_path / "server.log",
        ).start(timeout=120)
        try:
            trace_id, _, traceparent = new_trace()
            answer = httpx.post(
                f"{server.url}/v2/models/iris/infer",
                json=V2_BODY,
                headers={"traceparent": traceparent},
                timeout=30,
            )
            assert answer.status_code == 200
            # Still an answer naming a (non-recorded) span of the caller's trace.
            assert names_of(answer.headers["traceparent"])[0] == trace_id
            assert answer.headers["traceparent"].endswith("-00")
        finally:
            assert server.stop() == 0  # the drain flushes whatever was buffered
        assert "OpenTelemetry traces to" in server.log()  # tracing was on
        assert "sampler AlwaysOffSampler" in server.log()
        assert receiver.spans == []


SERVE_MODULES = """
import json, os, signal, sys, time
from kninfer.server.startup import serve
from kninfer.settings import ServeSettings

def ready():
    print(json.dumps(sorted(sys.modules)), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

settings = ServeSettings(host="127.0.0.1", http_port=int(sys.argv[1]),
                         grpc_port=int(sys.argv[2]))
sys.argv = sys.argv[:1]
sys.exit(serve(settings, time.perf_counter(), on_ready=ready))
"""


def test_tracing_off_imports_no_opentelemetry(tmp_path: Path) -> None:
    """The real start-up path up to ready, without the OTEL_* variables: nothing of
    opentelemetry is imported (kserve's modules, deferred as kninfer does, import none of it
    either). kserve imported whole (`make test-eager`) imports FastAPI, whose telemetry module
    imports OpenTelemetry's API when it is installed; the SDK and kninfer's exporter never."""
    env = {k: v for k, v in server_env(tmp_path).items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", SERVE_MODULES, str(free_port()), str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    modules = set(
        json.loads(next(line for line in done.stdout.splitlines() if line.startswith("[")))
    )
    packages = {module.split(".")[0] for module in modules}
    assert "kninfer" in packages and "uvicorn" in packages
    assert not {"opentelemetry.sdk", "kninfer.observability.otel"} & modules
    if os.environ.get("KNINFER_EAGER_IMPORTS", "") in ("", "0"):
        assert "opentelemetry" not in packages


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "no"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "KNINFER_OTEL": "0"}, False),
        ({"KNINFER_OTEL": "1"}, True),
    ],
)
def test_settings_turn_tracing_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], on: bool
) -> None:
    from kninfer.settings import ServeSettings

    for name in list(os.environ):
        if name.startswith("OTEL_") or name == "KNINFER_OTEL":
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert ServeSettings(cache_dir=tmp_path).otel_on is on


def test_traces_endpoint_is_derived_as_the_sdk_does(tmp_path: Path) -> None:
    from kninfer.settings import ServeSettings

    def endpoint(**given: str) -> str | None:
        return ServeSettings(cache_dir=tmp_path, **given).otel_traces_endpoint  # type: ignore[arg-type]

    assert endpoint(otel_exporter_otlp_endpoint="http://c:4318") == "http://c:4318/v1/traces"
    assert endpoint(otel_exporter_otlp_endpoint="http://c:4318/") == "http://c:4318/v1/traces"
    assert (
        endpoint(
            otel_exporter_otlp_endpoint="http://c:4318",
            otel_exporter_otlp_traces_endpoint="http://t:1/x",
        )
        == "http://t:1/x"
    )
    assert endpoint() is None


def test_drain_flushes_spans(tmp_path: Path) -> None:
    """SIGTERM: spans still buffered (a schedule delay far longer than the test) are exported
    before the process exits."""
    with Receiver().running() as receiver:
        server = ServerProcess(
            [],
            otel_env(tmp_path, receiver, OTEL_BSP_SCHEDULE_DELAY="600000"),
            tmp_path / "server.log",
        ).start(timeout=120)
        trace_id, _, traceparent = new_trace()
        try:
            answer = httpx.post(
                f"{server.url}/v2/models/iris/infer",
                json=V2_BODY,
                headers={"traceparent": traceparent},
                timeout=30,
            )
            assert answer.status_code == 200
            assert receiver.trace(trace_id) == []
            server.signal(signal.SIGTERM)
            assert server.process is not None
            server.process.wait(30)
        finally:
            server.stop()
        assert named(receiver.trace(trace_id), "POST /v2/models/{name}/infer")


@pytest.mark.parametrize(("status", "error"), [(200, False), (404, False), (503, True)])
def test_http_status_sets_the_span_status(status: int, error: bool) -> None:
    """In process, the middleware around an app answering `status`: ERROR for a 5xx only (OTel
    semantic conventions, HTTP server spans), and the answer's traceparent names the span."""
    import asyncio

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    from kninfer.observability import tracing
    from kninfer.observability.middleware import InstrumentedApp
    from kninfer.observability.otel import Otel

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    trace_id, caller, traceparent = new_trace()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v2/models/iris/infer",
        "headers": [(b"traceparent", traceparent.encode())],
    }
    tracing.use_otel(Otel(provider))
    try:
        asyncio.run(InstrumentedApp(app, "iris")(scope, receive, send))
    finally:
        tracing.use_otel(None)
    (span,) = exporter.get_finished_spans()
    assert span.parent is not None and f"{span.parent.span_id:016x}" == caller
    assert f"{span.context.trace_id:032x}" == trace_id
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == status
    assert (span.status.status_code is StatusCode.ERROR) is error
    headers = dict(sent[0]["headers"])
    assert names_of(headers[b"traceparent"].decode()) == (trace_id, f"{span.context.span_id:016x}")
