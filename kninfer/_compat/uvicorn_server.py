"""uvicorn's internals that the SIGTERM drain (kninfer.server.draining) relies on.

uvicorn has no public way to leave signals to its caller, to close its listeners early, to ask
which connections are open or whether one is between requests. What is used instead, checked
from 0.30 to 0.54:

- `Server.capture_signals()` (a context manager `Server.serve` enters): uvicorn installs its own
  SIGTERM/SIGINT handlers there and re-raises the signal after shutdown, which would turn a clean
  drain into exit status 143; `QuietSignalsServer` makes it a no-op, as KninferServer handles
  signals itself. On another uvicorn the override may not be reached: signals are uvicorn's.
- `Server.servers` (the asyncio servers listening), closed by `close_listeners`.
- `Server.server_state.connections` (the set of protocol instances) and each protocol's `cycle`
  (the request in progress, `response_complete` once answered; the same in the httptools and h11
  protocols).

On a uvicorn outside `WRITTEN_FOR`, `open_connections` answers None: the drain then leaves every
connection to uvicorn's own shutdown (which closes idle keep-alive connections at once) and logs
one warning.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from typing import Any

import uvicorn

# [first, last) uvicorn series these internals were read from.
WRITTEN_FOR = ((0, 30), (1, 0))


def _series(version: str) -> tuple[int, int] | None:
    try:
        major, minor = version.split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


@functools.cache
def fenced() -> bool:
    """Whether the installed uvicorn is a series this module knows (said once when not)."""
    return written_for(uvicorn.__version__)


def written_for(version: str) -> bool:
    """Whether uvicorn `version` is in `WRITTEN_FOR`; logs a warning when it is not."""
    series = _series(version)
    if series is not None and WRITTEN_FOR[0] <= series < WRITTEN_FOR[1]:
        return True
    logging.getLogger("kninfer").warning(
        "uvicorn %s is installed; kninfer's connection drain was written for uvicorn %d.%d to "
        "%d.%d, so it is off: on SIGTERM uvicorn's own shutdown closes idle keep-alive "
        "connections at once",
        version,
        *WRITTEN_FOR[0],
        *WRITTEN_FOR[1],
    )
    return False


def open_connections(server: Any, version: str | None = None) -> list[Any] | None:
    """The server's open connections, or None where this uvicorn (`version`, default the
    installed one) is not one known here."""
    if not (fenced() if version is None else written_for(version)):
        return None
    state = getattr(server, "server_state", None)
    connections = getattr(state, "connections", None)
    return list(connections) if connections is not None else None


def is_idle(connection: Any) -> bool:
    """Whether a connection has no request in progress. Unknown shapes count as busy: they are
    left for uvicorn's own shutdown at the end of the drain window."""
    if not hasattr(connection, "cycle"):
        return False
    cycle = connection.cycle
    return cycle is None or bool(getattr(cycle, "response_complete", False))


def close(connection: Any) -> None:
    """Close an idle connection as uvicorn's shutdown would (the protocol closes its transport)."""
    connection.shutdown()


class QuietSignalsServer(uvicorn.Server):
    """A `uvicorn.Server` that leaves SIGTERM and SIGINT to its caller."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def close_listeners(self) -> None:
        """Stop accepting connections now (uvicorn closes its listeners only at shutdown)."""
        for server in getattr(self, "servers", []):
            server.close()
