"""kninfer.cloudevents.binding in process: pure functions over (headers, body), checked against
events the CloudEvents SDK builds, without a server (the server-level behaviour is in
test_events.py)."""

from __future__ import annotations

import json

import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent, from_http

from kninfer.cloudevents.binding import (
    build_reply,
    content_mode,
    decode_request,
    is_event,
    parse_event,
    render_reply,
)
from kninfer.cloudevents.contract import RESPONSE_TYPE
from kninfer.errors import InvalidInput, UnsupportedMediaType

V2 = {
    "inputs": [
        {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
    ]
}
ATTRIBUTES = {
    "id": "e-1",
    "source": "tests/binding",
    "type": "dev.kninfer.inference.request",
    "correlationid": "basket-7",
}


def sdk_event() -> CloudEvent:
    return CloudEvent({**ATTRIBUTES, "datacontenttype": "application/json"}, V2)


def lower(headers: dict) -> dict[str, str]:
    return {k.lower(): v if isinstance(v, str) else v.decode() for k, v in headers.items()}


@pytest.mark.parametrize("convert", [to_binary, to_structured])
def test_an_sdk_event_parses_in_either_mode(convert) -> None:
    headers, body = convert(sdk_event())
    headers = lower(headers)
    assert is_event(headers)
    event = parse_event(headers, body)
    assert event.mode == ("binary" if convert is to_binary else "structured")
    assert (event.id, event.source, event.correlation_id) == ("e-1", "tests/binding", "basket-7")
    assert json.loads(event.data) == V2
    request = decode_request(event, "iris")
    assert request.model_name == "iris"
    assert request.inputs[0].name == "input-0"


def test_modes_by_headers() -> None:
    assert content_mode({"content-type": "application/cloudevents+json"}) == "structured"
    assert content_mode({"content-type": "application/cloudevents-batch+json"}) == "batch"
    assert content_mode({"ce-specversion": "1.0", "content-type": "application/json"}) == "binary"
    assert content_mode({"content-type": "application/json"}) is None
    assert not is_event({"content-type": "application/json"})


@pytest.mark.parametrize(
    ("headers", "body", "error", "message"),
    [
        ({"content-type": "application/json"}, b"{}", InvalidInput, "not a CloudEvent"),
        (
            {"content-type": "application/cloudevents-batch+json"},
            b"[]",
            UnsupportedMediaType,
            "batched CloudEvents",
        ),
        (
            {
                "ce-specversion": "1.0",
                "ce-id": "x",
                "ce-source": "s",
                "ce-type": "t",
                "content-type": "application/json",
            },
            b"",
            InvalidInput,
            "CloudEvent has no data",
        ),
        (
            {
                "ce-specversion": "1.0",
                "ce-id": "",
                "ce-source": "s",
                "ce-type": "t",
                "content-type": "application/json",
            },
            json.dumps(V2).encode(),
            InvalidInput,
            "id",
        ),
    ],
)
def test_bad_events_are_client_errors(headers, body, error, message) -> None:
    with pytest.raises(error, match=message):
        parse_event(headers, body)


def test_bad_data_is_a_400_that_says_it_came_from_the_event() -> None:
    headers, body = to_binary(
        CloudEvent(
            {**ATTRIBUTES, "datacontenttype": "application/json"},
            {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1, 2]}]},
        )
    )
    event = parse_event(lower(headers), body)
    with pytest.raises(InvalidInput, match="^CloudEvent data: input 'input-0'"):
        decode_request(event, "iris")


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_the_reply_is_a_response_event_the_sdk_reads(mode) -> None:
    headers, body = to_binary(sdk_event())
    event = parse_event(lower(headers), body)
    answer = json.dumps({"model_name": "iris", "outputs": []}).encode()
    reply = build_reply(event, answer, "kninfer/iris")
    out_headers, out_body = render_reply(reply, mode)
    parsed = from_http(out_headers, out_body)
    assert parsed["type"] == RESPONSE_TYPE
    assert parsed["source"] == "kninfer/iris"
    assert parsed["id"] != "e-1"  # a new event, never the request's id
    assert (parsed["causationid"], parsed["correlationid"]) == ("e-1", "basket-7")
    data = parsed.get_data()
    assert (json.loads(data) if isinstance(data, bytes | str) else data) == json.loads(answer)
