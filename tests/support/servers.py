"""Real `kninfer serve` processes on loopback ports of their own, and real clients for them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from tests.support.paths import ROOT

# Ports for test servers come from a block of their own per pytest-xdist worker, below the
# kernel's ephemeral range (32768-60999 by default): asking the kernel for a free port (bind to 0)
# twice in a row can return the same port, which once started a server with its HTTP and gRPC
# ports equal, and another worker or a client's source port can take it before the server binds.
PORT_BLOCK = 3000
_port_block_start = 20000 + PORT_BLOCK * int(
    os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0
)
_ports_handed_out = 0


def free_port() -> int:
    """A loopback port that no other caller in this test run is handed and nothing holds now."""
    global _ports_handed_out
    while True:
        port = _port_block_start + _ports_handed_out % PORT_BLOCK
        _ports_handed_out += 1
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # held by something else (or lingering from an earlier run)
            return port


@contextlib.contextmanager
def grpc_stub(target: str, timeout: float = 60.0) -> Iterator[GRPCInferenceServiceStub]:
    """A V2 gRPC stub on a channel that is connected before it is handed out; closed after."""
    with grpc.insecure_channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=timeout)
        yield GRPCInferenceServiceStub(channel)


def triton_infer(spec: dict[str, object], timeout: float = 60.0) -> dict[str, object]:
    """tritonclient's answer (tests/support/triton_client.py, run in its own process: its protobuf
    messages clash with KServe's in this one)."""
    import json

    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "support" / "triton_client.py")],
        input=json.dumps(spec).encode(),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


@dataclass
class ServerProcess:
    """A `kninfer serve` child process. Stopped by PID (ours only) when the test ends."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, wait: bool = True, timeout: float = 60.0) -> ServerProcess:
        command = [
            sys.executable,
            "-m",
            "kninfer",
            "serve",
            "--host",
            "127.0.0.1",
            "--http-port",
            str(self.http_port),
            "--grpc-port",
            str(self.grpc_port),
            *self.args,
        ]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
        return self.process.returncode


# Passed on to every server a test starts: `make test-eager` runs the serving tests with kserve
# imported eagerly, as kninfer runs on a kserve version its import deferral was not written for.
PASSED_THROUGH = ("KNINFER_EAGER_IMPORTS",)


def server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("KNINFER_") or k in PASSED_THROUGH
    }
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PORT", None)
    env.update(extra)
    return env


@contextlib.contextmanager
def servers_started(
    commands: dict[str, list[str]], tmp: Path, timeout: float = 120.0
) -> Iterator[dict[str, ServerProcess]]:
    """Several `kninfer serve` processes (name -> args), started together and waited for
    together (their start-ups overlap); SIGTERM to all first at the end, so they drain in
    parallel, then each is stopped by its PID."""
    started: dict[str, ServerProcess] = {}
    try:
        for name, args in commands.items():
            started[name] = ServerProcess(args, server_env(tmp), tmp / f"{name}.log").start(
                wait=False
            )
        for server in started.values():
            server.wait_ready(timeout=timeout)
        yield started
    finally:
        signalled = [
            s for s in started.values() if s.process is not None and s.process.poll() is None
        ]
        for server in signalled:
            server.signal()
        for server in signalled:
            # Wait for the one SIGTERM to finish its drain: stop() would send a second one,
            # which can land after the server's handler is gone and kill it (status -15).
            assert server.process is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.process.wait(30)
        for server in started.values():
            server.stop()


def served_version(server: ServerProcess) -> str:
    """The version a server with no --model-version reports (kninfer.storage.directory_digest
    of its --model-dir, or of the embedded iris model's directory in its cache)."""
    from kninfer.iris import iris_model_dir
    from kninfer.storage import directory_digest

    args = server.args
    if "--model-dir" in args:
        return directory_digest(Path(args[args.index("--model-dir") + 1]))
    return directory_digest(iris_model_dir(Path(server.env["XDG_CACHE_HOME"]) / "kninfer"))


def both_runtimes(family: str, model_dirs: dict[str, Path]) -> dict[str, list[str]]:
    """`kninfer serve` arguments for each compiled model directory twice: as it is (`NAME`,
    `--runtime auto`, which finds model.onnx) and through its framework (`NAME-native`), each
    model served under its own name."""
    commands: dict[str, list[str]] = {}
    for name, path in model_dirs.items():
        commands[name] = ["--predictor", family, "--model-dir", str(path), "--model-name", name]
        commands[f"{name}-native"] = [*commands[name], "--runtime", "native"]
    return commands


def stop_under_load(
    url: str, stop: Callable[[], int], body: dict[str, Any], clients: int = 1
) -> tuple[int, list[int], list[str]]:
    """`stop()` the server (SIGTERM, as Kubernetes does; it returns the exit code) while
    `clients` keep-alive clients keep posting `body` to `url`: the exit code, the statuses
    answered, and the requests lost (a read error after the connection was made; a refused
    connection is not lost: the listener closed before accepting it)."""
    statuses: list[int] = []
    lost: list[str] = []
    stopping = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while not stopping.is_set():
                try:
                    statuses.append(http.post(url, json=body).status_code)
                except httpx.ConnectError:
                    return  # the listener is closed: refused, never accepted
                except httpx.HTTPError as exc:
                    lost.append(f"{type(exc).__name__}: {exc}")
                    return

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    code = stop()
    stopping.set()
    for thread in threads:
        thread.join(30)
    return code, statuses, lost
