"""CloudEvents in and out (kninfer.cloudevents, kninfer.http.events, `kninfer event send`).

A real `kninfer serve` (embedded iris) per test module; events are built and replies parsed with
the `cloudevents` SDK; "the model ran" is read from KServe's `request_predict_seconds_count`
on /metrics (updated on every model call).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent, from_http
from hypothesis import given, settings
from hypothesis import strategies as st

from kninfer.cloudevents.binding import Reply
from kninfer.cloudevents.dedupe import DedupeCache
from tests.support.paths import ROOT
from tests.support.servers import ServerProcess, server_env

REQUEST_TYPE = "dev.kninfer.inference.request"
RESPONSE_TYPE = "dev.kninfer.inference.response"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
MISSING = "(CloudEvents 1.0, Required Attributes: non-empty strings)"


def v2_request(rows: list[list[float]] = ROWS) -> dict[str, Any]:
    flat = [v for row in rows for v in row]
    return {
        "inputs": [{"name": "input-0", "shape": [len(rows), 4], "datatype": "FP64", "data": flat}]
    }


def event(
    data: Any, *, event_id: str | None = None, source: str = "tests/events", **extensions: str
) -> CloudEvent:
    attributes = {
        "type": REQUEST_TYPE,
        "source": source,
        "id": event_id or str(uuid.uuid4()),
        "datacontenttype": "application/json",
        **extensions,
    }
    return CloudEvent(attributes, data)


def encode(ce: CloudEvent, mode: str) -> tuple[dict[str, str], bytes]:
    """HTTP headers and body of `ce` (data: a JSON-able object) in binary or structured mode."""
    if mode == "binary":
        headers, body = to_binary(ce)
    else:
        headers, body = to_structured(ce)
    return dict(headers), body


def post(url: str, ce: CloudEvent, mode: str) -> httpx.Response:
    headers, body = encode(ce, mode)
    return httpx.post(url, content=body, headers=headers, timeout=60)


def reply_of(response: httpx.Response) -> CloudEvent:
    assert response.status_code == 200, response.text
    return from_http(dict(response.headers), response.content)


def data_of(reply: CloudEvent) -> Any:
    data = reply.get_data()
    return json.loads(data) if isinstance(data, (bytes, str)) else data


def metric(server: ServerProcess, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    match = re.search(
        rf'^{re.escape(name)}\{{[^}}]*model_name="iris"[^}}]*\}} (\S+)$', text, re.MULTILINE
    )
    return float(match.group(1)) if match else 0.0


def model_runs(server: ServerProcess) -> float:
    return metric(server, "request_predict_seconds_count")


def replays(server: ServerProcess) -> float:
    return metric(server, "kninfer_cloudevent_replays_total")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("events")
    proc = ServerProcess([], server_env(tmp, K_SERVICE="iris-predictor"), tmp / "server.log")
    proc.start(timeout=180)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def plain_reply(server: ServerProcess) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/v2/models/iris/infer", json=v2_request(), timeout=60)
    assert response.status_code == 200
    return dict(response.json())


# ---- content modes, endpoints, reply attributes ------------------------------------------


@pytest.mark.parametrize("path", ["/", "/v2/models/iris/infer"])
@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_event_gets_a_reply_event_in_the_same_mode(
    server: ServerProcess, plain_reply: dict[str, Any], path: str, mode: str
) -> None:
    request = event(v2_request())
    response = post(server.url + path, request, mode)
    expected_type = "application/json" if mode == "binary" else "application/cloudevents+json"
    assert response.headers["content-type"] == expected_type
    assert ("ce-id" in response.headers) == (mode == "binary")
    reply = reply_of(response)
    assert reply["specversion"] == "1.0"
    assert reply["type"] == RESPONSE_TYPE
    assert reply["source"] == "kninfer/iris-predictor/models/iris"
    assert reply["datacontenttype"] == "application/json"
    assert reply["id"] != request["id"]
    uuid.UUID(reply["id"])
    assert reply["causationid"] == request["id"]
    assert reply["correlationid"] == request["id"]
    # The data is exactly the plain V2 response to the same request.
    data = data_of(reply)
    assert data == plain_reply
    assert data["outputs"][0]["data"] == [0, 2]


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_correlation_id_is_carried_through(server: ServerProcess, mode: str) -> None:
    request = event(v2_request(), correlationid="order-42")
    reply = reply_of(post(f"{server.url}/", request, mode))
    assert reply["correlationid"] == "order-42"
    assert reply["causationid"] == request["id"]


def test_structured_event_with_data_base64(server: ServerProcess) -> None:
    body = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "tests/b64",
        "type": REQUEST_TYPE,
        "datacontenttype": "application/json",
        "data_base64": base64.b64encode(json.dumps(v2_request()).encode()).decode(),
    }
    response = httpx.post(
        f"{server.url}/v2/models/iris/infer",
        json=body,
        headers={"content-type": "application/cloudevents+json"},
        timeout=60,
    )
    reply = reply_of(response)
    assert data_of(reply)["outputs"][0]["data"] == [0, 2]


def test_content_type_decides_structured_mode(server: ServerProcess) -> None:
    # HTTP binding section 3: an application/cloudevents content type is structured mode, even
    # with stray ce-* headers; media types are case-insensitive.
    body = _structured(id="structured-wins")
    headers = {
        "content-type": "Application/CloudEvents+JSON; charset=utf-8",
        "ce-specversion": "1.0",
        "ce-id": "stray",
        "ce-source": "x",
        "ce-type": "y",
    }
    response = httpx.post(
        f"{server.url}/v2/models/iris/infer", content=body, headers=headers, timeout=60
    )
    reply = reply_of(response)
    assert response.headers["content-type"] == "application/cloudevents+json"
    assert reply["causationid"] == "structured-wins"


def test_plain_v2_request_still_gets_a_plain_response(
    server: ServerProcess, plain_reply: dict[str, Any]
) -> None:
    response = httpx.post(f"{server.url}/v2/models/iris/infer", json=v2_request(), timeout=60)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert not [h for h in response.headers if h.lower().startswith("ce-")]
    assert response.json() == plain_reply


def test_root_picks_the_model_from_the_kninfermodel_extension(server: ServerProcess) -> None:
    reply = reply_of(post(f"{server.url}/", event(v2_request(), kninfermodel="iris"), "binary"))
    assert reply["source"].endswith("/models/iris")
    response = post(f"{server.url}/", event(v2_request(), kninfermodel="resnet"), "structured")
    assert response.status_code == 400
    assert response.json() == {
        "error": "CloudEvent extension kninfermodel='resnet' names a "
        "model this server does not serve; it serves: iris"
    }


# ---- redelivery ---------------------------------------------------------------------------


def test_redelivered_event_gets_the_same_reply_without_running_the_model(
    server: ServerProcess,
) -> None:
    request = event(v2_request())
    runs, replayed = model_runs(server), replays(server)
    first = reply_of(post(f"{server.url}/v2/models/iris/infer", request, "binary"))
    # Redelivered twice, in the other mode and on the other endpoint: same event (source, id).
    again = reply_of(post(f"{server.url}/", request, "structured"))
    third = reply_of(post(f"{server.url}/v2/models/iris/infer", request, "binary"))
    assert model_runs(server) == runs + 1
    assert replays(server) == replayed + 2
    assert again["id"] == third["id"] == first["id"]
    assert data_of(again) == data_of(first)
    # Same id from another source is another event: it runs.
    other = reply_of(
        post(
            f"{server.url}/",
            event(v2_request(), event_id=request["id"], source="tests/other"),
            "binary",
        )
    )
    assert other["id"] != first["id"]
    assert model_runs(server) == runs + 2


def test_concurrent_duplicates_run_the_model_once(server: ServerProcess) -> None:
    # A big batch keeps the first delivery in flight while the duplicates arrive.
    rows = [ROWS[i % 2] for i in range(20000)]
    request = event(v2_request(rows))
    headers, body = encode(request, "binary")
    runs = model_runs(server)

    def deliver(_: int) -> httpx.Response:
        return httpx.post(
            f"{server.url}/v2/models/iris/infer", content=body, headers=headers, timeout=120
        )

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(deliver, range(8)))
    replies = [reply_of(r) for r in responses]
    assert {r["id"] for r in replies} == {replies[0]["id"]}
    assert model_runs(server) == runs + 1
    assert len(data_of(replies[0])["outputs"][0]["data"]) == 20000


def test_failed_events_are_not_remembered(server: ServerProcess) -> None:
    bad = event(
        {
            "inputs": [
                {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}
            ]
        }
    )
    for _ in range(2):
        response = post(f"{server.url}/", bad, "binary")
        assert response.status_code == 400
        assert response.json() == {
            "error": "CloudEvent data: input 'input-0': 'data' has 3 values but shape needs 4"
        }


# ---- bad events ---------------------------------------------------------------------------

GOOD = json.dumps(v2_request()).encode()


def _binary(drop: str = "", **override: str) -> dict[str, str]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": str(uuid.uuid4()),
        "ce-source": "tests/bad",
        "ce-type": REQUEST_TYPE,
        "content-type": "application/json",
    }
    headers.update(override)
    headers.pop(drop, None)
    return headers


def _structured(drop: str = "", **override: Any) -> bytes:
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "tests/bad",
        "type": REQUEST_TYPE,
        "data": v2_request(),
    }
    doc.update(override)
    doc.pop(drop, None)
    return json.dumps(doc).encode()


STRUCTURED = {"content-type": "application/cloudevents+json"}

BAD_EVENTS = [
    (
        "binary-no-id",
        _binary(drop="ce-id"),
        GOOD,
        400,
        f"CloudEvent is missing required attribute(s) ce-id {MISSING}",
    ),
    (
        "binary-no-source-type",
        _binary(drop="ce-source", **{"ce-type": ""}),
        GOOD,
        400,
        f"CloudEvent is missing required attribute(s) ce-source, ce-type {MISSING}",
    ),
    (
        "binary-specversion-0.3",
        _binary(**{"ce-specversion": "0.3"}),
        GOOD,
        400,
        "CloudEvent specversion is '0.3'; kninfer accepts '1.0'",
    ),
    (
        "structured-no-type",
        STRUCTURED,
        _structured(drop="type"),
        400,
        f"CloudEvent is missing required attribute(s) type {MISSING}",
    ),
    (
        "structured-empty-id",
        STRUCTURED,
        _structured(id=""),
        400,
        f"CloudEvent is missing required attribute(s) id {MISSING}",
    ),
    (
        "structured-specversion-2.0",
        STRUCTURED,
        _structured(specversion="2.0"),
        400,
        "CloudEvent specversion is '2.0'; kninfer accepts '1.0'",
    ),
    (
        "structured-not-json",
        STRUCTURED,
        b"{specversion: 1.0",
        400,
        "structured CloudEvent is not valid JSON (...",
    ),
    ("structured-array", STRUCTURED, b"[]", 400, "structured CloudEvent must be a JSON object"),
    (
        "binary-data-not-json",
        _binary(**{"content-type": "text/plain"}),
        b"sepal 5.1",
        400,
        "CloudEvent data: request body is not valid JSON (...",
    ),
    (
        "structured-data-string",
        STRUCTURED,
        _structured(data="hello"),
        400,
        "CloudEvent data: request body must be a JSON object; expected a V2 inference request: "
        "{...",
    ),
    (
        "structured-no-data",
        STRUCTURED,
        _structured(drop="data"),
        400,
        "CloudEvent has no data; its data must be a V2 inference request",
    ),
    (
        "binary-empty-body",
        _binary(),
        b"",
        400,
        "CloudEvent has no data; its data must be a V2 inference request",
    ),
    (
        "bad-tensor-no-inputs",
        STRUCTURED,
        _structured(data={"input": []}),
        400,
        "CloudEvent data: request has no 'inputs'; expected a V2 inference request: {...",
    ),
    (
        "bad-tensor-wrong-shape",
        _binary(),
        json.dumps(
            {
                "inputs": [
                    {"name": "input-0", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}
                ]
            }
        ).encode(),
        400,
        "input 'input-0' has shape [2, 2]; expected [-1, 4] (-1 is any size)",
    ),
    (
        "avro-format",
        {"content-type": "application/cloudevents+avro"},
        b"\x00",
        415,
        "CloudEvents format 'application/cloudevents+avro' is not supported; use structured mode "
        "(application/cloudevents+json) or binary mode (ce-* headers)",
    ),
    (
        "batch",
        {"content-type": "application/cloudevents-batch+json"},
        b"[]",
        415,
        "batched CloudEvents (application/cloudevents-batch+json) are not supported: the "
        "cloudevents SDK 1.x has no batch format and Knative delivers one event per request; "
        "send each event on its own (binary or structured mode)",
    ),
]


@pytest.mark.parametrize("path", ["/", "/v2/models/iris/infer"])
@pytest.mark.parametrize(
    ("headers", "body", "status", "message"),
    [case[1:] for case in BAD_EVENTS],
    ids=[c[0] for c in BAD_EVENTS],
)
def test_bad_event_status_and_message(
    server: ServerProcess,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    message: str,
) -> None:
    response = httpx.post(server.url + path, content=body, headers=headers, timeout=60)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    if message.endswith("..."):  # the rest is the JSON parser's or codec's own wording
        assert error.startswith(message[:-3])
    else:
        assert error == message


def test_root_takes_events_only(server: ServerProcess) -> None:
    response = httpx.post(f"{server.url}/", json=v2_request(), timeout=60)
    assert response.status_code == 415
    assert response.json()["error"].startswith("POST / takes CloudEvents only: binary mode")
    response = httpx.post(
        f"{server.url}/", content=GOOD, timeout=60, headers=_binary(drop="ce-specversion")
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": f"CloudEvent is missing required attribute(s) ce-specversion {MISSING}"
    }
    # The V2 route keeps its 404 for an unknown model, event or not (Knative retries 404:
    # a route that is not there yet).
    response = post(f"{server.url}/v2/models/resnet/infer", event(v2_request()), "binary")
    assert response.status_code == 404
    assert response.json()["error"].startswith("model 'resnet' not found")
    assert httpx.get(f"{server.url}/v2/health/live", timeout=30).status_code == 200


# ---- transformers ------------------------------------------------------------------------


def test_transformer_takes_events_and_forwards_a_plain_v2_request(
    server: ServerProcess, start_server: Any
) -> None:
    transformer = start_server(
        "--transformer",
        "passthrough",
        "--predictor-host",
        f"127.0.0.1:{server.http_port}",
        "--model-name",
        "iris",
        env={"K_SERVICE": "iris-transformer"},
        timeout=180,
    )
    runs, replayed = model_runs(server), replays(server)
    request = event(v2_request(), correlationid="batch-7")
    first = reply_of(post(f"{transformer.url}/v2/models/iris/infer", request, "binary"))
    again = reply_of(post(f"{transformer.url}/", request, "structured"))
    assert first["source"] == "kninfer/iris-transformer/models/iris"
    assert first["type"] == RESPONSE_TYPE
    assert (first["causationid"], first["correlationid"]) == (request["id"], "batch-7")
    assert data_of(first)["outputs"][0]["data"] == [0, 2]
    assert again["id"] == first["id"]
    # The predictor ran once and got a plain V2 request (an event there would count a replay
    # or be answered with an event the transformer's V2 client could not read).
    assert model_runs(server) == runs + 1
    assert replays(server) == replayed


# ---- the redelivery cache on its own ----------------------------------------------------


def _reply(tag: str, size: int = 10) -> Reply:
    return Reply({"id": tag}, b"x" * size)


def test_dedupe_cache_single_flight_ttl_and_bounds() -> None:
    async def scenario() -> None:
        now = [0.0]
        cache = DedupeCache(max_entries=3, ttl_s=10.0, max_bytes=10_000, clock=lambda: now[0])
        gate = asyncio.Event()
        runs: list[str] = []

        async def slow() -> Reply:
            runs.append("slow")
            await gate.wait()
            return _reply("a")

        first = asyncio.ensure_future(cache.run(("m", "s", "a"), slow))
        second = asyncio.ensure_future(cache.run(("m", "s", "a"), slow))
        await asyncio.sleep(0)
        gate.set()
        assert [r for r, _ in await asyncio.gather(first, second)] == [_reply("a")] * 2
        assert (await first)[1] is False and (await second)[1] is True
        assert runs == ["slow"]

        # A failed run is not remembered; its waiters see the same error.
        async def boom() -> Reply:
            raise RuntimeError("model fell over")

        with pytest.raises(RuntimeError):
            await cache.run(("m", "s", "b"), boom)
        assert cache.get(("m", "s", "b")) is None

        # TTL: gone after ttl_s.
        now[0] = 10.5
        assert cache.get(("m", "s", "a")) is None

        # Entry bound: the oldest go first.
        for tag in "cdef":
            await cache.run(("m", "s", tag), lambda tag=tag: asyncio.sleep(0, _reply(tag)))
        assert len(cache) == 3 and cache.get(("m", "s", "c")) is None

        # Byte bound: a reply larger than the budget is never stored; big ones evict old ones.
        small = DedupeCache(max_entries=100, ttl_s=60.0, max_bytes=2000, clock=lambda: now[0])
        await small.run(("k", "1"), lambda: asyncio.sleep(0, _reply("1", 5000)))
        assert len(small) == 0
        for i in range(5):
            await small.run(("k", str(i)), lambda i=i: asyncio.sleep(0, _reply(str(i), 600)))
        assert small.bytes <= 2000 and len(small) == 2
        assert small.get(("k", "4")) is not None and small.get(("k", "0")) is None

    asyncio.run(scenario())


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 3000), st.floats(0, 5)), max_size=60))
@settings(max_examples=60, deadline=None)
def test_dedupe_cache_stays_within_its_bounds(ops: list[tuple[int, int, float]]) -> None:
    now = [0.0]
    cache = DedupeCache(max_entries=8, ttl_s=4.0, max_bytes=6000, clock=lambda: now[0])
    latest: dict[tuple[str, ...], tuple[Reply, float]] = {}
    for key_number, size, advance in ops:
        now[0] += advance
        key = ("m", "s", str(key_number))
        reply = _reply(str(key_number), size)
        cache.put(key, reply)
        latest[key] = (reply, now[0])
        assert len(cache) <= 8 and cache.bytes <= 6000
    for key, (reply, stored_at) in latest.items():
        found = cache.get(key)
        # Never a stale or wrong reply: what is found is the latest one, within its TTL.
        assert found is None or (found == reply and now[0] < stored_at + 4.0)


# ---- `kninfer event send` -----------------------------------------------------------------


def test_event_send_cli(server: ServerProcess, tmp_path: Path) -> None:
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(v2_request()))
    for args in (
        ["--url", f"{server.url}/v2/models/iris/infer"],
        ["--url", f"{server.url}/", "--structured", "--model", "iris", "--id", "abc"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "kninfer", "event", "send", "--file", str(request_file), *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        reply = json.loads(done.stdout)
        assert reply["type"] == RESPONSE_TYPE
        assert reply["data"]["outputs"][0]["data"] == [0, 2]
    assert reply["causationid"] == "abc"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kninfer",
            "event",
            "send",
            "--file",
            str(request_file),
            "--url",
            f"{server.url}/v2/models/resnet/infer",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("HTTP 404: ")


# ---- end to end through a Broker and Triggers ---------------------------------------------
#
# An in-test stand-in for Knative Eventing's Broker/Trigger data plane, following the documented
# behaviour (knative/specs, specs/eventing/data-plane.md; knative/eventing,
# pkg/kncloudevents/retries.go):
# - a Trigger delivers each event whose attributes match its `exact` filter, with `Prefer: reply`;
# - a 200 response carrying a CloudEvent is a reply: it goes back into the Broker and is matched
#   against every Trigger (including the one that produced it);
# - network errors and 5xx, 404, 408, 409, 429 are retried `retry` times, waiting
#   backoffDelay * 2^n (exponential) or backoffDelay * n (linear) before retry n; any other
#   status is final;
# - an event that is not delivered goes to the deadLetterSink with the `knativeerrordest`,
#   `knativeerrorcode` and `knativeerrordata` (base64 of the response body) extensions.


def retryable(status: int | None) -> bool:
    return status is None or status >= 500 or status in (404, 408, 409, 429)


class Broker:
    def __init__(self) -> None:
        self.queue: list[CloudEvent] = []
        self.triggers: list[dict[str, Any]] = []
        self.dead_letters: list[CloudEvent] = []
        self.attempts: list[tuple[str, str, int | None]] = []  # (trigger, event id, status)

    def trigger(
        self,
        name: str,
        type_: str,
        subscriber: Any,
        *,
        retry: int = 0,
        backoff_delay: float = 0.05,
        backoff_policy: str = "exponential",
        fmt: str = "binary",
    ) -> None:
        self.triggers.append(
            {
                "name": name,
                "type": type_,
                "subscriber": subscriber,
                "retry": retry,
                "delay": backoff_delay,
                "policy": backoff_policy,
                "format": fmt,
            }
        )

    def publish(self, ce: CloudEvent) -> None:
        self.queue.append(ce)

    def run(self) -> None:
        import time

        while self.queue:
            ce = self.queue.pop(0)
            for trigger in self.triggers:
                if ce["type"] == trigger["type"]:
                    self._dispatch(trigger, ce, time.sleep)

    def _send(self, trigger: dict[str, Any], ce: CloudEvent) -> tuple[int | None, Any]:
        subscriber = trigger["subscriber"]
        if callable(subscriber):  # an in-process sink
            return subscriber(ce), None
        headers, body = to_binary(ce) if trigger["format"] == "binary" else to_structured(ce)
        try:
            response = httpx.post(
                subscriber, content=body, timeout=60, headers={**headers, "prefer": "reply"}
            )
        except httpx.TransportError:
            return None, None
        return response.status_code, response

    def _dispatch(self, trigger: dict[str, Any], ce: CloudEvent, sleep: Any) -> None:
        status: int | None = None
        response: Any = None
        for attempt in range(trigger["retry"] + 1):
            if attempt:
                factor = 2**attempt if trigger["policy"] == "exponential" else attempt
                sleep(trigger["delay"] * factor)
            status, response = self._send(trigger, ce)
            self.attempts.append((trigger["name"], ce["id"], status))
            if status is not None and 200 <= status < 300:
                if status == 200 and response is not None and response.content:
                    self.publish(from_http(dict(response.headers), response.content))
                return
            if not retryable(status):
                break
        dead = CloudEvent(
            {
                **ce.get_attributes(),
                "knativeerrordest": str(trigger["subscriber"]),
                "knativeerrorcode": str(status),
            },
            ce.get_data(),
        )
        if response is not None:
            dead["knativeerrordata"] = base64.b64encode(response.content).decode()
        self.dead_letters.append(dead)


def test_broker_round_trip_replies_dead_letters_and_no_loops(server: ServerProcess) -> None:
    results: list[CloudEvent] = []
    broker = Broker()
    broker.trigger("infer", REQUEST_TYPE, f"{server.url}/v2/models/iris/infer", retry=3)
    broker.trigger(
        "infer-root",
        "dev.kninfer.inference.request.structured",
        f"{server.url}/",
        retry=3,
        fmt="json",
    )
    broker.trigger("results", RESPONSE_TYPE, lambda ce: results.append(ce) or 202)

    good = [event(v2_request()) for _ in range(3)]
    structured = CloudEvent(
        {
            **good[0].get_attributes(),
            "id": str(uuid.uuid4()),
            "type": "dev.kninfer.inference.request.structured",
        },
        v2_request(),
    )
    bad = event(
        {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1.0]}]}
    )
    producer_retry = CloudEvent(good[1].get_attributes(), v2_request())  # same source and id
    published = [*good, structured, bad, producer_retry]
    runs = model_runs(server)
    for ce in published:
        broker.publish(ce)
    broker.run()

    # Every request event was answered or dead-lettered: nothing lost.
    answered = [r["causationid"] for r in results]
    assert sorted(answered) == sorted(ce["id"] for ce in published if ce is not bad)
    assert [d["id"] for d in broker.dead_letters] == [bad["id"]]
    dead = broker.dead_letters[0]
    assert dead["knativeerrorcode"] == "400"
    assert json.loads(base64.b64decode(dead["knativeerrordata"])) == {
        "error": "CloudEvent data: input 'input-0': 'data' has 1 values but shape needs 4"
    }
    # 400 is final: one attempt. Replies never went back to a predictor (kserve#1671's loop).
    assert [a for a in broker.attempts if a[1] == bad["id"]] == [("infer", bad["id"], 400)]
    to_predictor = [a for a in broker.attempts if a[0] != "results"]
    assert len(to_predictor) == len(published)
    assert all(r["type"] == RESPONSE_TYPE for r in results)
    # The producer's retry got the first delivery's reply, and the model ran once per event.
    by_cause: dict[str, list[str]] = {}
    for r in results:
        by_cause.setdefault(r["causationid"], []).append(r["id"])
    assert len(set(by_cause[good[1]["id"]])) == 1 and len(by_cause[good[1]["id"]]) == 2
    assert model_runs(server) == runs + 4


def test_broker_retries_until_the_service_is_up_and_dead_letters_overload(
    start_server: Any,
) -> None:
    # Scale from zero: nothing listens yet, so the first deliveries fail and are retried.
    late = start_server(wait=False, timeout=180)
    overloaded = start_server(env={"KNINFER_MAX_INFLIGHT": "0"}, wait=False, timeout=180)
    results: list[CloudEvent] = []
    broker = Broker()
    broker.trigger(
        "infer",
        REQUEST_TYPE,
        f"{late.url}/v2/models/iris/infer",
        retry=15,
        backoff_delay=0.5,
        backoff_policy="linear",
    )
    broker.trigger("results", RESPONSE_TYPE, lambda ce: results.append(ce) or 202)
    request = event(v2_request())
    broker.publish(request)
    broker.run()
    statuses = [status for name, _, status in broker.attempts if name == "infer"]
    assert statuses[0] is None and statuses[-1] == 200 and len(statuses) >= 2
    assert [r["causationid"] for r in results] == [request["id"]]
    assert broker.dead_letters == []

    # Overloaded (429) is retried `retry` times with backoff, then dead-lettered.
    overloaded.wait_ready(180)
    broker = Broker()
    broker.trigger("infer", REQUEST_TYPE, f"{overloaded.url}/", retry=2, backoff_delay=0.05)
    request = event(v2_request())
    broker.publish(request)
    broker.run()
    assert [status for _, _, status in broker.attempts] == [429, 429, 429]
    assert [d["id"] for d in broker.dead_letters] == [request["id"]]
    assert broker.dead_letters[0]["knativeerrorcode"] == "429"
    error = json.loads(base64.b64decode(broker.dead_letters[0]["knativeerrordata"]))["error"]
    assert error == ("0 inferences in flight for model 'iris' (limit 0); retry later")
