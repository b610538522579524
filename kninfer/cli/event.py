"""`kninfer event send`: post a V2 request as a CloudEvent and print the reply event.

For trying a deployment by hand: a predictor's `/` or `/v2/models/{name}/infer`, or a Broker's
ingress URL (which answers 202 with no reply). The event is built and the reply read by
kninfer.cloudevents.client, with the `cloudevents` SDK, as a Knative Broker does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kninfer.cloudevents.client import build_request_event, reply_document


def cmd_event_send(options: argparse.Namespace) -> int:
    import httpx

    try:
        request = Path(options.file).read_bytes()
        json.loads(request)
    except (OSError, ValueError) as exc:
        print(f"kninfer event send: cannot use {options.file}: {exc}", file=sys.stderr)
        return 2
    headers, body = build_request_event(
        request,
        structured=options.structured,
        source=options.source,
        event_id=options.id,
        model=options.model,
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
