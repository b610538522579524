"""pytest's hooks and the shared fixtures; what tests import lives in tests/support."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import ServerProcess, server_env


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--write-docs-outputs",
        action="store_true",
        help="tests/test_docs.py writes each documented command's real output into "
        "the docs instead of comparing (make docs-outputs)",
    )
    parser.addoption(
        "--write-api-snapshot",
        action="store_true",
        help="tests/test_public_api.py writes kninfer's public API as it is now into "
        "tests/public_api.json instead of comparing",
    )


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[object]:
    """`start_server(*args, env={...}, wait=True)` starts `kninfer serve ARGS`; all are stopped
    at teardown."""
    started: list[ServerProcess] = []

    def start(
        *args: str, env: dict[str, str] | None = None, wait: bool = True, timeout: float = 60.0
    ) -> ServerProcess:
        server = ServerProcess(
            list(args),
            server_env(tmp_path, **(env or {})),
            tmp_path / f"server-{len(started)}.log",
        )
        started.append(server)
        return server.start(wait=wait, timeout=timeout)

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def iris_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One default `kninfer serve` (embedded iris) shared by read-only tests."""
    tmp = tmp_path_factory.mktemp("iris")
    server = ServerProcess([], server_env(tmp), tmp / "server.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def iris_estimator(tmp_path_factory: pytest.TempPathFactory) -> object:
    """The same deterministic iris model the default server trains."""
    import joblib

    from kninfer.iris import ensure_iris_model

    model_dir = ensure_iris_model(tmp_path_factory.mktemp("iris-ref"))
    return joblib.load(model_dir / "model.joblib")
