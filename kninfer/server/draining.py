"""Draining HTTP connections on SIGTERM without losing an accepted request."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn

from kninfer._compat import uvicorn_server
from kninfer.dataplane import DataPlane


class DrainingUvicorn(uvicorn_server.QuietSignalsServer):
    """uvicorn that leaves signal handling to KninferServer (uvicorn would re-raise SIGTERM
    after shutdown, turning a clean drain into exit status 143), and drains keep-alive
    connections instead of cutting them.

    uvicorn's shutdown closes every idle keep-alive connection at once, so a client that has
    just sent a request on one reads a reset: a request the server accepted and lost (0-2 of
    ~200 under 24 keep-alive clients, docs/reliability.md). Here the listener closes first (new
    connections are refused, so clients retry elsewhere), open connections are still served for
    `drain_window_s`, each answer saying `Connection: close` (CloseWhenDraining), and a
    connection is closed only after `QUIET_S` without a request on it; what is left when the
    window ends gets uvicorn's own shutdown.
    """

    drain_window_s = 0.0
    # How long a drained connection must go without a request before it is closed. Closing races
    # a client that sends at that instant (RFC 9112 section 9.3.1): at 0.5 s a client thread
    # starved of CPU on a loaded 2-core CI machine lost a request (1 of 109) this way; 2 s keeps
    # that race to clients idle for 2 s, and the drain window still bounds the whole wait.
    QUIET_S = 2.0

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        uvicorn_server.fenced()  # a drain that will be off is said at start-up, not at SIGTERM

    def close_listeners(self) -> None:
        """Refuse new connections from now on. Called in the same step that starts the drain,
        before any answer says `Connection: close`: a client told to reconnect must find the
        listener closed (refused, so it retries elsewhere). Closing it only at uvicorn's next
        tick (up to 0.1 s later) let such clients connect in between, into the listen backlog,
        which the close then reset: a transformer under 8 keep-alive clients lost a request
        that way (tests/reliability/test_reliability_drain.py)."""
        super().close_listeners()

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        self.close_listeners()
        for sock in sockets or []:
            sock.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_window_s
        idle_since: dict[int, float] = {}
        # uvicorn's connection set is an internal: None on a uvicorn it was not read from, and
        # the drain is left to uvicorn's shutdown.
        while (connections := uvicorn_server.open_connections(self)) and loop.time() < deadline:
            now = loop.time()
            for connection in connections:
                if not uvicorn_server.is_idle(connection):
                    idle_since.pop(id(connection), None)
                elif now - idle_since.setdefault(id(connection), now) >= self.QUIET_S:
                    uvicorn_server.close(connection)
            await asyncio.sleep(0.05)
        await super().shutdown(sockets=sockets)


class CloseWhenDraining:
    """ASGI wrapper: once the server drains, every response says `Connection: close` (RFC 9112
    section 9.6), so a keep-alive client finishes its request here and reconnects elsewhere."""

    def __init__(self, app: Any, dataplane: DataPlane) -> None:
        self.app = app
        self.dataplane = dataplane

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self.dataplane.draining or scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"
                ]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)
