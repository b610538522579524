"""CloudEvents HTTP protocol binding 1.0 for inference events: pure functions over (headers, body).

- Binary content mode (cloudevents/spec, http-protocol-binding.md, section 3.1: attributes in
  `ce-*` headers, body = data), structured content mode (3.2, `application/cloudevents+json`,
  JSON event format incl. `data_base64`), batched mode (3.3,
  `application/cloudevents-batch+json`), which the `cloudevents` SDK 1.x cannot parse and
  Knative never sends (a Trigger delivers one event per request), so it is refused with 415.
- CloudEvents core 1.0 "Required Attributes": `id`, `source`, `type` non-empty,
  `specversion` 1.0.

Parsing and building go through the `cloudevents` SDK; this module only adds what the SDK leaves
out (it fills a missing `id` with a fresh UUID, accepts empty attributes, and reports a binary
event with a missing `ce-id` as "Failed to find specversion"), and the V2 decoding of `data`.
No transport, no models: kninfer.http.events wires these into the HTTP server. The SDK and
kserve load inside functions.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from kninfer.cloudevents.contract import (
    BATCH_CONTENT_TYPE,
    CAUSATION_EXTENSION,
    CORRELATION_EXTENSION,
    DATA_CONTENT_TYPE,
    MODEL_EXTENSION,
    RESPONSE_TYPE,
    SPEC_VERSION,
    STRUCTURED_CONTENT_TYPE,
)
from kninfer.errors import InvalidInput, UnsupportedMediaType

if TYPE_CHECKING:
    from kserve.protocol.infer_type import InferRequest

ContentMode = Literal["binary", "structured", "batch", "unsupported"]


_REQUIRED = ("id", "source", "type", "specversion")


def _media_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def content_mode(headers: Mapping[str, str]) -> ContentMode | None:
    """Which CloudEvents HTTP content mode a request uses, or None for a plain request.

    Two header lookups, so plain V2 requests pay nothing measurable. `headers` must look up
    lower-case names (a dict with lower-case keys, or Starlette's case-insensitive Headers).
    HTTP protocol binding 1.0, section 3: an `application/cloudevents...` content type means a
    structured (3.2) or batched (3.3) message; otherwise `ce-specversion` means binary mode (3.1).
    """
    content_type = headers.get("content-type")
    if content_type is not None and content_type[:23].lower() == "application/cloudevents":
        media = _media_type(headers)
        if media == STRUCTURED_CONTENT_TYPE:
            return "structured"
        if media == BATCH_CONTENT_TYPE:
            return "batch"
        return "unsupported"  # another event format (e.g. +avro, +protobuf)
    if "ce-specversion" in headers:
        return "binary"
    return None


def is_event(headers: Mapping[str, str]) -> bool:
    """Is this request a CloudEvent, in any content mode? The one test every transport and the
    metrics use (two header lookups, so plain V2 requests pay nothing more)."""
    return content_mode(headers) is not None


def has_ce_headers(headers: Mapping[str, str]) -> bool:
    """Some `ce-*` header is present (a binary event that lost its `ce-specversion`)."""
    return any(name.lower().startswith("ce-") for name in headers)


@dataclass(frozen=True)
class InboundEvent:
    """A parsed, validated request event. `data` is the raw V2 request (JSON bytes, or the
    binary tensor extension's bytes in binary mode), not yet decoded."""

    mode: Literal["binary", "structured"]
    attributes: dict[str, Any]
    data: bytes
    data_headers: dict[str, str]

    @property
    def id(self) -> str:
        return str(self.attributes["id"])

    @property
    def source(self) -> str:
        return str(self.attributes["source"])

    @property
    def type(self) -> str:
        return str(self.attributes["type"])

    @property
    def model(self) -> str | None:
        value = self.attributes.get(MODEL_EXTENSION)
        return str(value) if value is not None else None

    @property
    def correlation_id(self) -> str:
        value = self.attributes.get(CORRELATION_EXTENSION)
        return str(value) if value else self.id


def _keep_raw(data: Any) -> Any:
    """SDK data unmarshaller: hand back what the SDK read, so kninfer.protocol decodes it once."""
    return data


def _missing_message(missing: list[str], prefix: str = "") -> str:
    return (
        "CloudEvent is missing required attribute(s) "
        + ", ".join(f"{prefix}{name}" for name in missing)
        + " (CloudEvents 1.0, Required Attributes: non-empty strings)"
    )


def _check_specversion(value: Any) -> None:
    if value != SPEC_VERSION:
        raise InvalidInput(f"CloudEvent specversion is {value!r}; kninfer accepts {SPEC_VERSION!r}")


def _check_binary_headers(headers: Mapping[str, str]) -> None:
    # The SDK only recognises binary mode when all four required headers are present and
    # otherwise tries the body as a structured event ("Failed to find specversion");
    # name the missing attribute instead.
    missing = [name for name in _REQUIRED if not headers.get(f"ce-{name}")]
    if missing:
        raise InvalidInput(_missing_message(missing, "ce-"))
    _check_specversion(headers["ce-specversion"])


def _explain_structured(body: bytes) -> None:
    """Raise a precise InvalidInput for a structured event the SDK refused (its own messages
    echo the whole body)."""
    from kninfer.protocol.jsonio import loads_json

    doc = loads_json(body, "structured CloudEvent")
    if not isinstance(doc, dict):
        raise InvalidInput("structured CloudEvent must be a JSON object")
    missing = [name for name in _REQUIRED if doc.get(name) in (None, "")]
    if missing:
        raise InvalidInput(_missing_message(missing))
    _check_specversion(doc["specversion"])


def parse_event(headers: Mapping[str, str], body: bytes) -> InboundEvent:
    """Parse and validate a binary or structured CloudEvent whose data is a V2 request.

    `headers` has lower-case keys. Raises InvalidInput (400: a malformed event is never retried,
    so Knative hands it to the dead-letter sink) or UnsupportedMediaType (415, batched mode)."""
    from cloudevents.exceptions import GenericException
    from cloudevents.http import from_http

    mode = content_mode(headers)
    if mode == "batch":
        raise UnsupportedMediaType(
            f"batched CloudEvents ({BATCH_CONTENT_TYPE}) are not supported: the cloudevents SDK "
            "1.x has no batch format and Knative delivers one event per request; "
            "send each event on its own (binary or structured mode)"
        )
    if mode == "unsupported":
        raise UnsupportedMediaType(
            f"CloudEvents format {_media_type(headers)!r} is not supported; use structured mode "
            f"({STRUCTURED_CONTENT_TYPE}) or binary mode (ce-* headers)"
        )
    if mode is None:
        raise InvalidInput(
            "not a CloudEvent: expected binary mode (ce-specversion, ce-id, ce-source, ce-type "
            f"headers) or structured mode (content-type {STRUCTURED_CONTENT_TYPE})"
        )
    if mode == "binary":
        _check_binary_headers(headers)
    else:
        # The SDK looks for binary headers first; the content type has already said structured.
        headers = {k: v for k, v in headers.items() if not k.startswith("ce-")}
    try:
        event = from_http(headers, body, data_unmarshaller=_keep_raw)
    except (GenericException, ValueError, TypeError) as exc:  # TypeError: non-string specversion
        if mode == "structured":
            _explain_structured(body)
        raise InvalidInput(f"malformed CloudEvent: {str(exc)[:200]}") from None
    attributes: dict[str, Any] = dict(event.get_attributes())
    # The SDK accepts empty or non-string ids/sources/types and specversion 0.3.
    missing = [n for n in _REQUIRED if not isinstance(attributes.get(n), str) or not attributes[n]]
    if missing:
        raise InvalidInput(_missing_message(missing))
    _check_specversion(attributes["specversion"])
    data = event.get_data()
    if isinstance(data, str):  # structured `data` (the SDK hands it over as JSON text)
        data = data.encode()
    if not data or data == b"null":
        raise InvalidInput("CloudEvent has no data; its data must be a V2 inference request")
    data_headers: dict[str, str] = {}
    if mode == "binary":
        # Binary mode's body is the data verbatim, so the binary tensor extension works too.
        data_headers = {k: v for k, v in headers.items() if not k.startswith("ce-")}
    return InboundEvent(mode, attributes, bytes(data), data_headers)


def decode_request(event: InboundEvent, model_name: str) -> InferRequest:
    """The V2 inference request carried in the event's data (kninfer.protocol rules; 400)."""
    from kninfer.protocol.v2 import decode_v2_request

    try:
        return decode_v2_request(event.data, event.data_headers, model_name)
    except InvalidInput as exc:
        raise InvalidInput(f"CloudEvent data: {exc.message}") from None


@dataclass(frozen=True)
class Reply:
    """A reply event: attributes plus the V2 response JSON, rendered per content mode."""

    attributes: dict[str, Any]
    data: bytes

    @property
    def id(self) -> str:
        return str(self.attributes["id"])

    @property
    def size(self) -> int:
        return len(self.data) + sum(len(str(v)) + len(k) for k, v in self.attributes.items())


def build_reply(event: InboundEvent, response_json: bytes, source: str) -> Reply:
    """The reply to `event`: new id, kninfer's response type (never a request type, so a reply
    re-enqueued into the Broker matches no request Trigger: kserve#1671), correlation extensions.
    """
    from cloudevents.http import CloudEvent

    reply = CloudEvent(
        {
            "id": str(uuid.uuid4()),
            "source": source,
            "type": RESPONSE_TYPE,
            "specversion": SPEC_VERSION,
            "datacontenttype": DATA_CONTENT_TYPE,
            CAUSATION_EXTENSION: event.id,
            CORRELATION_EXTENSION: event.correlation_id,
        }
    )
    return Reply(dict(reply.get_attributes()), response_json)


def render_reply(
    reply: Reply, mode: Literal["binary", "structured"]
) -> tuple[dict[str, str], bytes]:
    """HTTP headers and body for `reply` in the request's content mode (SDK marshalling)."""
    import orjson
    from cloudevents.conversion import to_binary, to_structured
    from cloudevents.http import CloudEvent

    event = CloudEvent(reply.attributes, reply.data)
    if mode == "binary":
        headers, body = to_binary(event, data_marshaller=_keep_raw)
    else:
        # Structured data must be the JSON value itself, not data_base64 of its text.
        headers, body = to_structured(event, data_marshaller=orjson.loads)
    return dict(headers), body if isinstance(body, bytes) else body.encode()
