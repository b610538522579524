"""An oversized body gets its 413 through every client, Python's urllib included: the server
reads and discards what the client is still sending (bounded) before it closes the connection,
so the client reads the answer instead of a connection reset (which is what a close with unread
data in the socket's receive buffer sends, RFC 9112 section 9.6)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import httpx
import pytest

from tests.support.servers import ServerProcess, server_env

LIMIT = 65536


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("body-limit")
    proc = ServerProcess(
        ["--max-body-bytes", str(LIMIT)], server_env(tmp), tmp / "server.log"
    ).start(timeout=120)
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.mark.parametrize("size", [LIMIT + 1, 4 * 1024 * 1024])
def test_urllib_reads_the_413(server: ServerProcess, size: int) -> None:
    request = urllib.request.Request(
        f"{server.url}/v2/models/iris/infer",
        data=b" " * size,
        headers={"content-type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 413
    assert json.loads(caught.value.read()) == {
        "error": f"request body is {size} bytes; the limit is {LIMIT} (KNINFER_MAX_BODY_BYTES)"
    }


def test_a_chunked_body_over_the_limit_is_a_413_for_urllib(server: ServerProcess) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b" " * 65536

    request = urllib.request.Request(
        f"{server.url}/v2/models/iris/infer",
        data=chunks(),
        headers={"content-type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 413
    assert json.loads(caught.value.read()) == {
        "error": f"request body exceeds the limit of {LIMIT} bytes (KNINFER_MAX_BODY_BYTES)"
    }


def test_the_server_answers_after_refusing(server: ServerProcess) -> None:
    reply = httpx.post(
        f"{server.url}/v2/models/iris/infer",
        json={
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, 4],
                    "datatype": "FP64",
                    "data": [5.1, 3.5, 1.4, 0.2],
                }
            ]
        },
    )
    assert reply.status_code == 200, reply.text
