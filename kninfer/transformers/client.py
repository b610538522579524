"""A transformer's way to its predictor: KServe's own V2 clients, with kninfer's error map.

KServe 0.21's transformer path (`kserve.Model.predict` with `--predictor_host`) keeps its
configuration in a ContextVar set by `ModelServer.__init__`, which worker processes never see
(answers 501 "Could not find PredictorConfig." with `--workers > 1`), sends every predictor failure
to the client as a 500, ignores `RESTConfig.retries`, and forwards only `x-request-id`,
`x-b3-traceid` and `authorization` (kserve/model.py, `_FORWARDABLE_HEADERS`). Here:

- the clients are built from `ServeSettings` by each process on first use (inside its event loop,
  which grpc.aio needs), so every worker has its own;
- `predictor_timeout_s` bounds the whole call (httpx timeout, gRPC deadline);
- `predictor_retries` retries connection failures only (httpx transport retries on connect
  errors; gRPC's retry policy on UNAVAILABLE), never a request the predictor already received;
- failures become `kninfer.errors` types naming the predictor's address: unreachable 503
  (retryable; Knative may be scaling it from zero), no answer in time 504, any other failure 502;
- W3C Trace Context (`traceparent`, `tracestate`; W3C Trace Context section 3), B3 and
  `x-request-id` headers are forwarded, so the predictor's logs and spans join the request's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kninfer.errors import KninferError, ServiceUnavailable, UpstreamError, UpstreamTimeout
from kninfer.observability import tracing

if TYPE_CHECKING:
    from kserve import InferRequest, InferResponse

    from kninfer.settings import ServeSettings

logger = logging.getLogger("kninfer")

FORWARDED_HEADERS = (
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "b3",
    "authorization",
)

# gRPC channel reconnect backoff (grpc/doc/connection-backoff.md): the defaults grow to 120 s, so a
# predictor that restarts would stay unreachable for minutes after it is back. Cap it at 1 s.
_RECONNECT_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]


class _QuietKServeClientErrors(logging.Filter):
    """KServe's InferenceGRPCClient logs every failed call with a full traceback on
    `kserve.trace` before re-raising; here each failure is mapped and logged once, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to infer")


def _quiet_kserve_client() -> None:
    trace = logging.getLogger("kserve.trace")
    if not any(isinstance(f, _QuietKServeClientErrors) for f in trace.filters):
        trace.addFilter(_QuietKServeClientErrors())


def forwarded_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The tracing and identity headers of the client's request that go on to the predictor."""
    if not headers:
        return {}
    lower = {k.lower(): v for k, v in headers.items()}
    return {name: lower[name] for name in FORWARDED_HEADERS if name in lower}


class PredictorClient:
    """Sends V2 InferRequests to one predictor over REST or gRPC (KServe's clients)."""

    def __init__(self, settings: ServeSettings) -> None:
        if not settings.predictor_host:
            raise ValueError("a transformer needs --predictor-host HOST:PORT")
        self.host = settings.predictor_host.removeprefix("http://")
        self.protocol = settings.predictor_protocol
        self.timeout_s = settings.predictor_timeout_s
        self.retries = max(0, settings.predictor_retries)
        self._rest: Any = None
        self._grpc: Any = None

    @property
    def address(self) -> str:
        scheme = "grpc" if self.protocol == "grpc-v2" else "http"
        return f"{scheme}://{self.host}"

    async def infer(
        self, request: InferRequest, headers: Mapping[str, str] | None = None
    ) -> InferResponse:
        forwarded = forwarded_headers(headers)
        otel = tracing.OTEL
        if otel is not None:
            # OpenTelemetry: the call is a client span, and the predictor's request span its
            # child: the traceparent sent is the client span's (W3C Trace Context, 3.2).
            with otel.span(tracing.PREDICTOR_CALL, otel.CLIENT, self._span_attributes()) as span:
                if span is not None:
                    forwarded.update(otel.headers_of(span))
                return await self._infer(request, forwarded)
        return await self._infer(request, forwarded)

    def _span_attributes(self) -> dict[str, Any]:
        host, _, port = self.host.rpartition(":")
        attributes: dict[str, Any] = {"server.address": host or self.host}
        if port.isdigit():
            attributes["server.port"] = int(port)
        if self.protocol == "grpc-v2":
            attributes.update(
                {
                    "rpc.system": "grpc",
                    "rpc.method": "ModelInfer",
                    "rpc.service": "inference.GRPCInferenceService",
                }
            )
        else:
            attributes["http.request.method"] = "POST"
        return attributes

    async def _infer(self, request: InferRequest, forwarded: dict[str, str]) -> InferResponse:
        try:
            if self.protocol == "grpc-v2":
                return await self._infer_grpc(request, forwarded)
            return await self._infer_rest(request, forwarded)
        except KninferError as exc:
            logger.warning("%s (request id %s)", exc, forwarded.get("x-request-id", "-"))
            raise

    # ---- REST V2 ---------------------------------------------------------------------------

    def _rest_client(self) -> Any:
        if self._rest is None:
            import httpx
            from kserve import InferenceRESTClient, RESTConfig

            transport = httpx.AsyncHTTPTransport(retries=self.retries)
            self._rest = InferenceRESTClient(
                RESTConfig(
                    protocol="v2", timeout=self.timeout_s, retries=self.retries, transport=transport
                )
            )
        return self._rest

    async def _infer_rest(self, request: InferRequest, headers: dict[str, str]) -> InferResponse:
        import httpx

        try:
            response: InferResponse = await self._rest_client().infer(
                f"http://{self.host}",
                data=request,
                model_name=request.model_name,
                headers=headers,
            )
            return response
        except httpx.TimeoutException as exc:
            if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
                raise self._unreachable(f"connect timed out ({type(exc).__name__})") from None
            raise self._timed_out() from None
        except httpx.ConnectError as exc:
            raise self._unreachable(str(exc) or type(exc).__name__) from None
        except httpx.HTTPStatusError as exc:
            raise self._answered(exc.response.status_code, _error_text(exc.response)) from None
        except httpx.HTTPError as exc:  # connection dropped mid-request, bad framing
            raise UpstreamError(
                f"predictor at {self.address} failed: {type(exc).__name__}: {exc}"
            ) from None
        except KninferError:
            raise
        except Exception as exc:  # a reply KServe's client could not decode
            raise UpstreamError(
                f"predictor at {self.address} sent a reply that is not a V2 inference "
                f"response: {type(exc).__name__}: {exc}"
            ) from None

    # ---- gRPC V2 ---------------------------------------------------------------------------

    def _grpc_client(self) -> Any:
        if self._grpc is None:
            from kserve import InferenceGRPCClient

            _quiet_kserve_client()

            # KServe turns `retries` into the policy's maxAttempts, which counts the first try.
            attempts = min(self.retries + 1, 5) if self.retries else 0
            self._grpc = InferenceGRPCClient(
                self.host,
                timeout=self.timeout_s,
                retries=attempts,
                channel_args=list(_RECONNECT_OPTIONS),
            )
        return self._grpc

    async def _infer_grpc(self, request: InferRequest, headers: dict[str, str]) -> InferResponse:
        import grpc

        metadata = tuple(headers.items())
        try:
            response: InferResponse = await self._grpc_client().infer(request, headers=metadata)
            return response
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise self._timed_out() from None
            if code == grpc.StatusCode.UNAVAILABLE:
                raise self._unreachable(exc.details() or "UNAVAILABLE") from None
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise ServiceUnavailable(
                    f"predictor at {self.address} is overloaded: {exc.details()}"
                ) from None
            raise UpstreamError(
                f"predictor at {self.address} answered {code.name}: {exc.details()}"
            ) from None

    # ---- error map -------------------------------------------------------------------------

    def _unreachable(self, why: str) -> ServiceUnavailable:
        tries = f" after {self.retries + 1} attempts" if self.retries else ""
        return ServiceUnavailable(f"predictor at {self.address} is unreachable{tries}: {why}")

    def _timed_out(self) -> UpstreamTimeout:
        return UpstreamTimeout(
            f"predictor at {self.address} did not answer within {self.timeout_s:g}s "
            "(KNINFER_PREDICTOR_TIMEOUT_S)"
        )

    def _answered(self, status: int, text: str) -> KninferError:
        message = f"predictor at {self.address} answered {status}: {text}"
        if status in (429, 503):
            return ServiceUnavailable(message)  # retryable on the predictor's side too
        if status == 504:
            return UpstreamTimeout(message)
        return UpstreamError(message)

    async def close(self) -> None:
        if self._rest is not None:
            await self._rest.close()
        if self._grpc is not None:
            await self._grpc.close()


def _error_text(response: Any) -> str:
    try:
        doc = json.loads(response.content)
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return str(doc["error"])
    return response.text[:200]
