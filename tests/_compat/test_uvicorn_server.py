"""kninfer._compat.uvicorn_server: uvicorn's open connections, read only on a uvicorn series
they were read from; on another, the SIGTERM drain is off, start-up says so once, and a server
still answers and exits 0 on SIGTERM (uvicorn's own shutdown)."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import uvicorn

from kninfer._compat import uvicorn_server
from tests.support.servers import ServerProcess, server_env

WARNING = (
    "uvicorn {} is installed; kninfer's connection drain was written for uvicorn 0.30 to "
    "1.0, so it is off: on SIGTERM uvicorn's own shutdown closes idle keep-alive "
    "connections at once"
)


@pytest.mark.parametrize("version", ["0.30.0", "0.54.0", "0.99.1"])
def test_known_series_are_fenced_in(version: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="kninfer"):
        assert uvicorn_server.written_for(version) is True
    assert caplog.messages == []


@pytest.mark.parametrize("version", ["0.29.6", "1.0.0", "2.1", "dev"])
def test_other_versions_turn_the_drain_off_and_say_so(
    version: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="kninfer"):
        assert uvicorn_server.written_for(version) is False
    assert caplog.messages == [WARNING.format(version)]


def test_the_installed_uvicorn_is_one_known_here() -> None:
    assert uvicorn_server.fenced() is True, uvicorn.__version__


def test_open_connections_of_a_real_server() -> None:
    server = uvicorn.Server(uvicorn.Config(app=lambda *_: None))
    first, second = object(), object()
    server.server_state.connections.update({first, second})
    assert set(uvicorn_server.open_connections(server) or []) == {first, second}
    assert uvicorn_server.open_connections(server, version="1.2.0") is None
    # A server without uvicorn's state (a renamed attribute) reads as unknown, not as empty.
    assert uvicorn_server.open_connections(SimpleNamespace()) is None


@pytest.mark.parametrize(
    ("connection", "idle"),
    [
        (SimpleNamespace(cycle=None), True),
        (SimpleNamespace(cycle=SimpleNamespace(response_complete=True)), True),
        (SimpleNamespace(cycle=SimpleNamespace(response_complete=False)), False),
        (SimpleNamespace(cycle=SimpleNamespace()), False),
        (SimpleNamespace(), False),  # an unknown shape is busy: left to uvicorn's shutdown
    ],
)
def test_idle_connections(connection: object, idle: bool) -> None:
    assert uvicorn_server.is_idle(connection) is idle


def test_a_server_on_an_unknown_uvicorn_serves_and_stops_cleanly(tmp_path: Path) -> None:
    """The real process, told it runs uvicorn 9.0.0 (a sitecustomize sets the version before
    kninfer starts): one warning at start-up, answers, and exit 0 on SIGTERM."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import uvicorn\nuvicorn.__version__ = '9.0.0'\n")
    server = ServerProcess(
        [], server_env(tmp_path, PYTHONPATH=str(site)), tmp_path / "server.log"
    ).start()
    try:
        reply = httpx.post(
            f"{server.url}/v1/models/iris:predict",
            json={"instances": [[5.1, 3.5, 1.4, 0.2]]},
            timeout=30,
        )
        assert (reply.status_code, reply.json()) == (200, {"predictions": [0]})
        server.signal(signal.SIGTERM)
        assert server.process is not None
        assert server.process.wait(30) == 0
    finally:
        server.stop()
    assert server.log().count(WARNING.format("9.0.0")) == 1, server.log()
