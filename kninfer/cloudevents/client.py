"""`kninfer event send`: post a V2 request as a CloudEvent and print the reply event.

For trying a deployment by hand: a predictor's `/` or `/v2/models/{name}/infer`, or a Broker's
ingress URL (which answers 202 with no reply). The event is built and the reply parsed with the
`cloudevents` SDK, as a Knative Broker sends and reads them (CloudEvents HTTP binding, binary or
structured mode). The argparse parser lives in kninfer.cli.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from kninfer.cloudevents.contract import MODEL_EXTENSION, REQUEST_TYPE


def build_request_event(
    request: bytes,
    *,
    structured: bool,
    source: str,
    event_id: str | None = None,
    model: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """HTTP headers and body of a `dev.kninfer.inference.request` event carrying `request`."""
    from cloudevents.conversion import to_binary, to_structured
    from cloudevents.http import CloudEvent

    attributes: dict[str, Any] = {
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": REQUEST_TYPE,
        "datacontenttype": "application/json",
    }
    if model:
        attributes[MODEL_EXTENSION] = model
    event = CloudEvent(attributes, request)
    if structured:
        # Structured mode carries the request JSON as `data` (not data_base64).
        headers, body = to_structured(event, data_marshaller=json.loads)
    else:
        headers, body = to_binary(event, data_marshaller=lambda data: data)
    return dict(headers), body if isinstance(body, bytes) else body.encode()


def reply_document(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The reply event as one JSON object (attributes plus `data`), whichever mode it came in."""
    from cloudevents.http import from_http

    event = from_http(headers, body)
    doc: dict[str, Any] = dict(event.get_attributes())
    doc["data"] = event.get_data()
    return doc
