"""`kninfer event send`: post a V2 request as a CloudEvent and print the reply event.

For trying a deployment by hand: a predictor's `/` or `/v2/models/{name}/infer`, or a Broker's
ingress URL (which answers 202 with no reply). The event is built and the reply parsed with the
`cloudevents` SDK, as a Knative Broker sends and reads them (CloudEvents HTTP binding, binary or
structured mode). The argparse parser lives in kninfer.cli.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from kninfer.events import MODEL_EXTENSION, REQUEST_TYPE


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


def cmd_event_send(options: argparse.Namespace) -> int:
    import httpx

    try:
        request = Path(options.file).read_bytes()
        json.loads(request)
    except (OSError, ValueError) as exc:
        print(f"kninfer event send: cannot use {options.file}: {exc}", file=sys.stderr)
        return 2
    headers, body = build_request_event(
        request, structured=options.structured, source=options.source,
        event_id=options.id, model=options.model,
    )
    try:
        response = httpx.post(options.url, content=body, headers=headers, timeout=options.timeout)
    except httpx.HTTPError as exc:
        print(f"kninfer event send: {options.url}: {exc}", file=sys.stderr)
        return 1
    if response.status_code // 100 != 2:
        print(f"HTTP {response.status_code}: {response.text}", file=sys.stderr)
        return 1
    if not response.content and "ce-id" not in response.headers:
        print(f"HTTP {response.status_code}: accepted, no reply event")
        return 0
    doc = reply_document(dict(response.headers), response.content)
    print(json.dumps(doc, indent=2))
    return 0
