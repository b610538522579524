"""In-process payload logging: one CloudEvent per inference request and one per response, sent
to a sink (`--logger-url`, else Knative's `K_SINK`) as KServe's logger agent sends them, without
its sidecar (docs/observability.md, "Payload logging").

What a consumer of KServe's events reads is kept (kserve pkg/logger v0.20, worker.go
`sendHttpCloudEvent`, handler.go `ServeHTTP`): binary content mode, the types
`org.kubeflow.serving.inference.request` / `.response`, the extensions `inferenceservicename`,
`namespace`, `component`, `endpoint` and `metadata` (the allow-listed request headers as a JSON
object of lists, Go's `map[string][]string`), the payload as the body. What KServe's gets wrong
is fixed (issues kserve#2722, kserve#2173):

- request and response have distinct ids (`<request id>` and `<request id>-response`; CloudEvents
  core 1.0, "id": "Producers MUST ensure that source + id is unique for each distinct event ...
  Consumers MAY assume that Events with identical source and id are duplicates"), and both carry
  the request id in the `requestid` extension: Seldon's request logger joins a request and its
  response by that attribute, and by `ce-id` only without it (seldon-core
  components/seldon-request-logger, log_helper.py `extract_request_id`);
- every response is logged, with its HTTP status in `statuscode` (KServe logs only 200s);
- the request's W3C trace context travels on both (CloudEvents distributed-tracing extension:
  `traceparent`, `tracestate`), and so do the model's name and version (`modelname`,
  `modelversion`);
- `--logger-headers` names match case-insensitively (KServe's match only Go's canonical spelling);
- delivery never touches the request path: the request path only snapshots references and puts
  an event on a bounded queue (`--logger-queue-size`); encoding to JSON and sending happen in
  sender tasks, with a per-attempt timeout and a few retries with exponential backoff. A full
  queue or exhausted retries drop the event, counted in `kninfer_payload_log_dropped_total` and
  logged at most once per DROP_LOG_INTERVAL_S. KServe's agent blocks the request when its
  queue of 100 is full, and sends each event once, with no timeout.

Bodies are JSON whatever the transport: a V2 request or response (REST, binary extension, gRPC,
CloudEvents) as V2 JSON, a V1 or MLflow payload as the JSON object the model received. This
module is imported only when payload logging is on (kninfer.server.lifecycle), so the off case
imports nothing of it and starts no task.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import orjson

from kninfer.cloudevents.contract import (
    INFERENCE_SERVICE_EXTENSION,
    LOGGER_REQUEST_TYPE,
    LOGGER_RESPONSE_TYPE,
    REQUEST_ID_EXTENSION,
    REQUEST_ID_HEADER,
    SPEC_VERSION,
    reply_source,
)
from kninfer.errors import message_of, status_of
from kninfer.observability import tracing
from kninfer.observability.prometheus import payload_log_dropped_counter
from kninfer.observability.tracing import current_traceparent, trace_context
from kninfer.protocol.tensor import served_version
from kninfer.protocol.v2 import input_array, parameter_value

if TYPE_CHECKING:
    import httpx

    from kninfer.dataplane import ServedModel
    from kninfer.settings import ServeSettings

logger = logging.getLogger("kninfer")

# KServe's event types and extension names (kserve pkg/logger/worker.go).
REQUEST_TYPE = LOGGER_REQUEST_TYPE
RESPONSE_TYPE = LOGGER_RESPONSE_TYPE
NAMESPACE_EXTENSION = "namespace"
COMPONENT_EXTENSION = "component"
ENDPOINT_EXTENSION = "endpoint"
METADATA_EXTENSION = "metadata"
# kninfer's additions (CloudEvents extension names: lower-case letters and digits, core 1.0
# "Attribute Naming Convention").
STATUS_EXTENSION = "statuscode"
MODEL_NAME_EXTENSION = "modelname"
MODEL_VERSION_EXTENSION = "modelversion"
REVISION_EXTENSION = "revision"  # kninfer's: not an extension KServe's logger sends
RESPONSE_ID_SUFFIX = "-response"
DATA_CONTENT_TYPE = "application/json"

LoggerMode = Literal["all", "request", "response"]

# Delivery (constants, not settings: the queue size is the one knob a deployment needs).
SENDERS = 4  # events in flight to the sink at once
ATTEMPTS = 4  # the first send and three retries
ATTEMPT_TIMEOUT_S = 2.0  # per attempt, connect to last byte of the answer
BACKOFF_S = 0.1  # before retry n: BACKOFF_S * 2**(n-1), plus up to as much again of jitter
FLUSH_S = 5.0  # at most this long to send what is queued at shutdown (also <= grace / 2)
DROP_LOG_INTERVAL_S = 10.0
# What Knative Eventing retries (knative/specs, eventing data-plane.md, "Event Acknowledgement
# and Delivery Retry"): 5xx, 404, 408, 409 and 429; any other 4xx is final.
RETRY_STATUSES = frozenset({404, 408, 409, 429})

DROP_REASONS = ("queue_full", "send_failed", "shutdown", "unencodable")


def inference_service_of(k_service: str | None, model_name: str) -> str:
    """The InferenceService a Knative Service belongs to: KServe names the Service it generates
    `<isvc>-predictor` or `<isvc>-transformer` (kserve pkg/constants PredictorServiceName,
    TransformerServiceName), as `kninfer render` names plain Knative Services. Outside Knative
    (no K_SERVICE) the served model's name stands in."""
    if not k_service:
        return model_name
    for suffix in ("-predictor", "-transformer"):
        if k_service.endswith(suffix):
            return k_service[: -len(suffix)]
    return k_service


def canonical_header(name: str) -> str:
    """Go's canonical header spelling (net/textproto CanonicalMIMEHeaderKey): KServe's `metadata`
    keys are spelled so, and its consumers read them so."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def flush_budget(grace_period_s: float, drain_elapsed_s: float | None) -> float:
    """Seconds queued events get to be sent at shutdown: FLUSH_S, at most half the grace
    period, and never past its end (`drain_elapsed_s`: how much of it the drain has used)."""
    budget = min(FLUSH_S, grace_period_s / 2)
    if drain_elapsed_s is not None:
        budget = min(budget, grace_period_s - drain_elapsed_s)
    return max(0.0, budget)


@dataclass(slots=True)
class Inference:
    """What the request path records for one inference (no encoding, no I/O)."""

    id: str
    model: str
    version: str
    traceparent: str
    tracestate: str | None
    metadata: dict[str, list[str]]
    # The `requestid` extension: the id, unless the request is itself a payload-log request
    # event (a shadow's copy, delivered by a Trigger in binary mode), whose requestid it keeps,
    # so baseline and shadow answers join on it (docs/deploy.md, "Shadow traffic").
    request_id: str


@dataclass(slots=True)
class _Event:
    inference: Inference
    response: bool
    time: float
    status: int
    payload: Any  # a snapshot taken by _snapshot_request / _snapshot_response / an error body


@dataclass(slots=True)
class _RequestSnapshot:
    """A V2 request's parts, taken on the request path so later changes to the object (a
    transformer's preprocess) do not reach the log."""

    id: str | None
    parameters: Any
    inputs: list[Any]
    outputs: list[Any] | None


@dataclass(slots=True)
class _ResponseSnapshot:
    """A V2 response's parts. Each output's data is taken before the transport encodes it: the
    gRPC encoder moves numpy data into raw bytes in place (kninfer.protocol.grpc_v2)."""

    model_name: str
    model_version: str | None
    id: str | None
    parameters: Any
    outputs: list[tuple[str, list[int], str, Any, dict[str, Any]]]


# ---- snapshots (request path) and encoding (sender tasks) -------------------------------------


def _snapshot_request(request: Any) -> Any:
    if isinstance(request, dict):
        return dict(request)  # a V1 / MLflow payload
    inputs = getattr(request, "inputs", None)
    if inputs is None:
        return request
    outputs = request.request_outputs
    return _RequestSnapshot(
        request.id, request.parameters, list(inputs), list(outputs) if outputs else None
    )


def _snapshot_response(response: Any) -> Any:
    if isinstance(response, dict):
        return dict(response)
    outputs = getattr(response, "outputs", None)
    if outputs is None or not hasattr(response, "model_name"):
        return response
    taken = []
    for output in outputs:
        data = output.data
        # No data: the output is still raw bytes (a gRPC answer passed through); decode later.
        taken.append(
            (
                output.name,
                list(output.shape),
                output.datatype,
                output if data is None else data,
                dict(output.parameters or {}),
            )
        )
    return _ResponseSnapshot(
        response.model_name, response.model_version, response.id, response.parameters, taken
    )


def _json_values(array: np.ndarray) -> Any:
    """A tensor's data as V2 JSON's flat list (BYTES as text, as kninfer.protocol.v2 writes)."""
    flat = array.reshape(-1)
    if flat.dtype.kind in "OSU":
        return [
            v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else str(v) for v in flat
        ]
    return flat


def _parameters(parameters: Any) -> dict[str, Any]:
    """V2 parameters as JSON values: REST gives a dict, gRPC a map of InferParameter."""
    if not parameters:
        return {}
    return {
        key: parameter_value(value)
        for key, value in parameters.items()
        if key != "binary_data_size"
    }  # the body carries the data inline


def request_document(payload: Any) -> Any:
    """The logged request: V2 JSON ("Inference Request JSON Object", Open Inference Protocol
    required_api.md) for a V2 request from any transport, else the payload itself."""
    if not isinstance(payload, _RequestSnapshot):
        return payload
    doc: dict[str, Any] = {}
    if payload.id:
        doc["id"] = payload.id
    parameters = _parameters(payload.parameters)
    if parameters:
        doc["parameters"] = parameters
    inputs = []
    for infer_input in payload.inputs:
        entry: dict[str, Any] = {
            "name": infer_input.name,
            "shape": list(infer_input.shape),
            "datatype": infer_input.datatype,
            "data": _json_values(input_array(infer_input)),
        }
        input_parameters = _parameters(infer_input.parameters)
        if input_parameters:
            entry["parameters"] = input_parameters
        inputs.append(entry)
    doc["inputs"] = inputs
    if payload.outputs:
        outputs = []
        for requested in payload.outputs:
            output: dict[str, Any] = {"name": requested.name}
            output_parameters = _parameters(requested.parameters)
            if output_parameters:
                output["parameters"] = output_parameters
            outputs.append(output)
        doc["outputs"] = outputs
    return doc


def response_document(payload: Any) -> Any:
    """The logged response: V2 JSON ("Inference Response JSON Object") for a V2 response, else
    the payload itself (a V1 answer, or an `{"error": ...}` body)."""
    if not isinstance(payload, _ResponseSnapshot):
        if hasattr(payload, "SerializeToString") and hasattr(payload, "outputs"):
            from kserve import InferResponse  # a protobuf answer a transformer passed on

            return response_document(_snapshot_response(InferResponse.from_grpc(payload)))
        return payload
    outputs = []
    for name, shape, datatype, data, parameters in payload.outputs:
        if isinstance(data, np.ndarray):
            array = data
        elif hasattr(data, "as_numpy"):
            array = data.as_numpy()
        else:
            array = np.asarray(data)
        entry: dict[str, Any] = {
            "name": name,
            "datatype": datatype,
            "shape": shape,
            "data": _json_values(array),
        }
        parameters.pop("binary_data_size", None)
        if parameters:
            entry["parameters"] = parameters
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": payload.model_name, "outputs": outputs}
    if payload.model_version:
        doc["model_version"] = payload.model_version
    if payload.id:
        doc["id"] = payload.id
    parameters = _parameters(payload.parameters)
    if parameters:
        doc["parameters"] = parameters
    return doc


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot log a {type(value).__name__} as JSON")


def encode_body(event: _Event) -> bytes:
    document = (
        response_document(event.payload) if event.response else request_document(event.payload)
    )
    return orjson.dumps(document, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _header_value(value: str) -> str:
    """An attribute value as a header: characters outside printable ASCII are percent-encoded
    as UTF-8 (CloudEvents HTTP binding 1.0.2, 3.1.3.2). That section asks the same of space, `"`
    and `%`; they are left as they are, because the CloudEvents Python SDK's `from_http` (1.x)
    does not percent-decode, and the `metadata` JSON is full of quotes."""
    if value.isascii() and value.isprintable():
        return value
    return "".join(
        c if c.isascii() and c.isprintable() else "".join(f"%{b:02X}" for b in c.encode())
        for c in value
    )


# ---- the logger ------------------------------------------------------------------------------


class PayloadLogger:
    """The request path calls `begin`, then `end` or `fail` (kninfer.dataplane); `start` and
    `close` run on the server's event loop (kninfer.server.lifecycle)."""

    def __init__(
        self,
        url: str,
        *,
        mode: LoggerMode = "all",
        headers: Iterable[str] = (),
        queue_size: int = 1000,
        source_of: Callable[[str], str] | None = None,
        inference_service: str = "",
        namespace: str = "",
        component: str = "predictor",
        endpoint: str = "",
        revision: str | None = None,
    ) -> None:
        self.url = url
        self.mode = mode
        self.log_requests = mode in ("all", "request")
        self.log_responses = mode in ("all", "response")
        self.metadata_headers = frozenset(h.strip().lower() for h in headers if h.strip())
        self.queue_size = queue_size
        self.source_of = source_of or (lambda model: reply_source(model, None, None))
        self._sources: dict[str, str] = {}
        # Attributes every event carries, as headers.
        self.fixed = {
            "ce-specversion": SPEC_VERSION,
            f"ce-{INFERENCE_SERVICE_EXTENSION}": _header_value(inference_service),
            f"ce-{NAMESPACE_EXTENSION}": _header_value(namespace),
            f"ce-{COMPONENT_EXTENSION}": _header_value(component),
            f"ce-{ENDPOINT_EXTENSION}": _header_value(endpoint),
            "content-type": DATA_CONTENT_TYPE,
        }
        if revision:  # the Knative revision that answered (K_REVISION), beside modelversion
            self.fixed[f"ce-{REVISION_EXTENSION}"] = _header_value(revision)
        counter = payload_log_dropped_counter()
        self._dropped = {reason: counter.labels(reason) for reason in DROP_REASONS}
        self._unlogged: dict[str, int] = {}
        self._last_drop_log = 0.0
        self._queue: asyncio.Queue[_Event] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sending: dict[asyncio.Task[None], _Event] = {}
        self._client: httpx.AsyncClient | None = None
        self._closed = False

    @classmethod
    def from_settings(cls, settings: ServeSettings) -> PayloadLogger:
        assert settings.logger_url
        return cls(
            settings.logger_url,
            mode=settings.logger_mode,
            headers=settings.logger_headers.split(","),
            queue_size=settings.logger_queue_size,
            source_of=lambda model: reply_source(model, settings.ce_source, settings.k_service),
            inference_service=inference_service_of(settings.k_service, settings.model_name),
            namespace=settings.logger_namespace or "",
            component="transformer" if settings.transformer else "predictor",
            revision=settings.k_revision,
        )

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Create the queue, the HTTP client and the sender tasks on the running loop."""
        import httpx

        self._queue = asyncio.Queue(self.queue_size)
        self._client = httpx.AsyncClient(
            timeout=ATTEMPT_TIMEOUT_S,
            limits=httpx.Limits(max_connections=SENDERS, max_keepalive_connections=SENDERS),
        )
        self._tasks = [
            asyncio.create_task(self._sender(), name=f"kninfer-payload-log-{n}")
            for n in range(SENDERS)
        ]
        logger.info(
            "payload logging to %s (mode %s, queue %d)", self.url, self.mode, self.queue_size
        )

    async def close(self, timeout: float) -> None:
        """Send what is queued for up to `timeout` seconds, then drop the rest (counted)."""
        self._closed = True
        if self._queue is not None and self._tasks:
            try:
                async with asyncio.timeout(timeout):
                    await self._queue.join()
            except TimeoutError:
                pass
            # Counted before cancelling: each sender forgets its event as it unwinds.
            in_flight = len(self._sending)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            left = self._queue.qsize() + in_flight
            if left:
                self._drop("shutdown", left)
        if self._client is not None:
            await self._client.aclose()
        self._log_drops(force=True)

    # ---- the request path ------------------------------------------------------------------

    def begin(
        self, model: ServedModel, request: Any, headers: Mapping[str, Any] | None
    ) -> Inference:
        """Record the request and queue its event (mode all or request)."""
        context = trace_context()
        metadata: dict[str, list[str]] = {}
        if self.metadata_headers and headers:
            for name, value in headers.items():
                if name.lower() in self.metadata_headers:
                    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                    metadata.setdefault(canonical_header(name), []).append(text)
        own_id = str(uuid.uuid4())
        copied = headers.get(REQUEST_ID_HEADER) if headers else None
        if isinstance(copied, bytes):
            copied = copied.decode("latin-1")
        inference = Inference(
            own_id,
            model.name,
            served_version(model),
            # The request's own, else a fresh one kept for the request, so a transformer's call
            # to its predictor and a reply event carry the same (kninfer.observability.tracing).
            current_traceparent(),
            context.get("tracestate"),
            metadata,
            str(copied) if copied else own_id,
        )
        if self.log_requests:
            self._put(_Event(inference, False, time.time(), 0, _snapshot_request(request)))
        return inference

    def end(self, inference: Inference, response: Any) -> None:
        if self.log_responses:
            self._put(_Event(inference, True, time.time(), 200, _snapshot_response(response)))

    def fail(self, inference: Inference, exc: BaseException) -> None:
        """The model raised: the response event carries the status and `{"error": ...}` body
        every transport answers with (kninfer.errors)."""
        if self.log_responses:
            self._put(
                _Event(inference, True, time.time(), status_of(exc), {"error": message_of(exc)})
            )

    def _put(self, event: _Event) -> None:
        if self._queue is None or self._closed:
            self._drop("shutdown")
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._drop("queue_full")

    # ---- delivery (sender tasks) -----------------------------------------------------------

    async def _sender(self) -> None:
        assert self._queue is not None
        task = asyncio.current_task()
        assert task is not None
        while True:
            event = await self._queue.get()
            self._sending[task] = event
            try:
                await self._deliver(event)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one event stop a sender
                logger.exception("payload log: sending an event failed")
                self._drop("send_failed")
            finally:
                self._sending.pop(task, None)
                self._queue.task_done()
            self._log_drops()

    def event_headers(self, event: _Event) -> dict[str, str]:
        inference = event.inference
        headers = dict(self.fixed)
        source = self._sources.get(inference.model)
        if source is None:
            source = self._sources[inference.model] = _header_value(self.source_of(inference.model))
        headers["ce-source"] = source
        if event.response:
            headers["ce-id"] = inference.id + RESPONSE_ID_SUFFIX
            headers["ce-type"] = RESPONSE_TYPE
            headers[f"ce-{STATUS_EXTENSION}"] = str(event.status)
        else:
            headers["ce-id"] = inference.id
            headers["ce-type"] = REQUEST_TYPE
        headers["ce-time"] = _rfc3339(event.time)
        headers[f"ce-{REQUEST_ID_EXTENSION}"] = _header_value(inference.request_id)
        headers[f"ce-{MODEL_NAME_EXTENSION}"] = _header_value(inference.model)
        if inference.version:
            headers[f"ce-{MODEL_VERSION_EXTENSION}"] = _header_value(inference.version)
        headers["ce-traceparent"] = inference.traceparent
        if inference.tracestate:
            headers["ce-tracestate"] = _header_value(inference.tracestate)
        # A header is ASCII: non-ASCII header values in the JSON are percent-encoded.
        headers[f"ce-{METADATA_EXTENSION}"] = _header_value(
            orjson.dumps(inference.metadata).decode()
        )
        return headers

    async def _deliver(self, event: _Event) -> None:
        otel = tracing.OTEL
        if otel is None:
            await self._send(event)
            return
        # OpenTelemetry: the delivery is a client span under the inference's request span.
        attributes = {
            "cloudevents.event_type": RESPONSE_TYPE if event.response else REQUEST_TYPE,
            "cloudevents.event_id": event.inference.id
            + (RESPONSE_ID_SUFFIX if event.response else ""),
            "url.full": self.url,
        }
        with otel.send_span(tracing.PAYLOAD_LOG, event.inference.traceparent, attributes) as span:
            outcome = await self._send(event)
            if span is not None and outcome is not None:
                otel.mark_error(span, outcome)

    async def _send(self, event: _Event) -> str | None:
        """Encode and send one event; None when delivered, else the drop reason."""
        try:
            body = encode_body(event)
        except Exception as exc:
            logger.warning(
                "payload log: cannot encode the %s of inference %s as JSON: %s",
                "response" if event.response else "request",
                event.inference.id,
                exc,
            )
            self._drop("unencodable")
            return "unencodable"
        headers = self.event_headers(event)
        client = self._client
        assert client is not None
        for attempt in range(ATTEMPTS):
            if attempt:
                delay = BACKOFF_S * 2 ** (attempt - 1)
                await asyncio.sleep(delay + random.uniform(0, delay))
            try:
                async with asyncio.timeout(ATTEMPT_TIMEOUT_S):
                    answer = await client.post(self.url, content=body, headers=headers)
            except Exception:  # httpx's transport errors, the attempt's TimeoutError
                continue
            status = answer.status_code
            if 200 <= status < 300:
                return None
            if status < 500 and status not in RETRY_STATUSES:
                break
        self._drop("send_failed")
        return "send_failed"

    # ---- what was dropped ------------------------------------------------------------------

    def _drop(self, reason: str, count: int = 1) -> None:
        self._dropped[reason].inc(count)
        self._unlogged[reason] = self._unlogged.get(reason, 0) + count
        self._log_drops()

    def _log_drops(self, force: bool = False) -> None:
        if not self._unlogged:
            return
        now = time.monotonic()
        if not force and now - self._last_drop_log < DROP_LOG_INTERVAL_S:
            return
        self._last_drop_log = now
        counts = ", ".join(f"{reason} {n}" for reason, n in sorted(self._unlogged.items()))
        logger.warning(
            "payload log: dropped %d event(s) for %s since the last report (%s); "
            "kninfer_payload_log_dropped_total counts them all",
            sum(self._unlogged.values()),
            self.url,
            counts,
        )
        self._unlogged.clear()
