"""CloudEvents on the HTTP server: `POST /` and the event side of `POST /v2/models/{name}/infer`.

Knative Eventing's Broker delivers each event to a Trigger's subscriber as an HTTP POST and puts a
200 response that carries a CloudEvent back into the Broker as a reply (knative/specs,
data-plane.md, "Derived (Reply) Events"). So: event in, reply event out, in the content mode of the
request.
Status codes follow the same spec's retry rules ("Event Acknowledgement and Delivery Retry"):
a malformed event or bad tensor is 400 (not retried: it goes to the dead-letter sink); a model
not ready (503) or overloaded (429) is retried. Statuses come from kninfer.errors; errors are
answered by kninfer.http.responses.error_response, the one HTTP error path.

The model is called through the dataplane, exactly as the plain V2 route calls it, so
predictors and transformers both take events, and a transformer forwards a plain V2 request to
its predictor: the `ce-*` headers are not passed on.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kninfer.cloudevents.binding import (
    InboundEvent,
    Reply,
    build_reply,
    decode_request,
    has_ce_headers,
    is_event,
    parse_event,
    render_reply,
)
from kninfer.cloudevents.contract import (
    MODEL_EXTENSION,
    REQUEST_ID_EXTENSION,
    REQUEST_ID_HEADER,
    reply_source,
)
from kninfer.cloudevents.dedupe import DedupeCache, event_key
from kninfer.dataplane import DataPlane
from kninfer.errors import InvalidInput, UnsupportedMediaType
from kninfer.http.responses import guarded, read_body, request_headers
from kninfer.observability import tracing
from kninfer.observability.prometheus import cloudevent_replays_counter
from kninfer.observability.tracing import adopt_event_trace, trace_headers
from kninfer.protocol import paths
from kninfer.protocol.v2 import encode_v2_response
from kninfer.settings import ServeSettings

# Headers that describe the event envelope, not the inference request.
_ENVELOPE_HEADERS = ("content-type", "content-length", "inference-header-content-length")


class EventEndpoint:
    """CloudEvents in, CloudEvents out, for the models of `dataplane`."""

    def __init__(self, dataplane: DataPlane, settings: ServeSettings) -> None:
        self.replays = cloudevent_replays_counter()
        self.dataplane = dataplane
        self.settings = settings
        self.max_body_bytes = settings.max_body_bytes
        self.cache = DedupeCache(
            settings.ce_dedupe_size, settings.ce_dedupe_ttl_s, settings.ce_dedupe_max_bytes
        )

    async def root(self, request: Request) -> Response:
        """`POST /`: the model is the `kninfermodel` extension, else the only model served."""
        if not is_event(request.headers):
            if has_ce_headers(request.headers):
                raise InvalidInput(
                    "CloudEvent is missing required attribute(s) ce-specversion "
                    "(CloudEvents 1.0, Required Attributes: non-empty strings)"
                )
            raise UnsupportedMediaType(
                "POST / takes CloudEvents only: binary mode (ce-* headers) or structured mode "
                "(content-type application/cloudevents+json); plain V2 requests go to "
                "POST /v2/models/{name}/infer"
            )
        return await self.respond(request, None)

    async def respond(self, request: Request, path_model: str | None) -> Response:
        body = await read_body(request, self.max_body_bytes)
        headers = request_headers(request)
        event = parse_event(headers, body)
        # For kninfer.observability: the access log's ce_id, and the trace context of the event
        # (CloudEvents distributed-tracing extension) when the HTTP request carried none.
        request.state.kninfer_ce_id = event.id
        adopt_event_trace(event.attributes.get("traceparent"), event.attributes.get("tracestate"))
        otel = tracing.OTEL
        if otel is not None:
            # The request span's CloudEvents attributes (OTel semantic conventions); a
            # structured-mode event's traceparent (in the body, read after the span began) is
            # a link.
            otel.annotate(
                {
                    "cloudevents.event_id": event.id,
                    "cloudevents.event_type": str(event.attributes.get("type", "")),
                    "cloudevents.event_source": str(event.attributes.get("source", "")),
                    "cloudevents.event_spec_version": str(event.attributes.get("specversion", "")),
                },
                link_traceparent=event.attributes.get("traceparent"),
            )
        name = path_model or self._pick_model(event)
        request.state.kninfer_model = name
        model = self.dataplane.ready_model(name)
        model_headers = {
            k: v
            for k, v in headers.items()
            if not k.startswith("ce-") and k not in _ENVELOPE_HEADERS
        }
        request_id = event.attributes.get(REQUEST_ID_EXTENSION)
        if request_id:  # a payload-log event (a shadow's copy): its answer keeps the id
            model_headers[REQUEST_ID_HEADER] = str(request_id)

        async def run() -> Reply:
            with tracing.step(tracing.DECODE):
                infer_request = decode_request(event, name)
            response, _ = await self.dataplane.infer(model, infer_request, model_headers)
            with tracing.step(tracing.EVENT_REPLY):
                return reply_of(response)

        def reply_of(response: Any) -> Reply:
            # Replies carry JSON data: a Broker keeps only ce-* headers and the body, so the
            # binary tensor extension's length header would not survive the trip.
            payload, _ = encode_v2_response(response)
            source = reply_source(name, self.settings.ce_source, self.settings.k_service)
            reply = build_reply(event, payload, source)
            # W3C trace context travels on as the reply's `traceparent` extension (with tracing
            # on, the request span's).
            reply.attributes.update(trace_headers())
            return reply

        reply, replayed = await self.cache.run(event_key(event, name), run)
        if replayed:
            self.replays.labels(model_name=name).inc()
        wire_headers, payload = render_reply(reply, event.mode)
        return Response(payload, 200, headers=wire_headers)

    def _pick_model(self, event: InboundEvent) -> str:
        names = [m.name for m in self.dataplane.models()]
        wanted = event.model
        if wanted is not None:
            if wanted not in names:
                # The event is wrong, not the route: 400 (Knative would retry a 404).
                raise InvalidInput(
                    f"CloudEvent extension {MODEL_EXTENSION}='{wanted}' names a model this "
                    f"server does not serve; it serves: {', '.join(names) or 'none'}"
                )
            return wanted
        if len(names) == 1:
            return names[0]
        raise InvalidInput(
            f"CloudEvent has no {MODEL_EXTENSION} extension and this server serves "
            f"{len(names)} models ({', '.join(names)}); set {MODEL_EXTENSION} to one of them"
        )

    def routes(self) -> list[Route]:
        return [Route(paths.EVENTS, guarded(self.root), methods=["POST"])]
