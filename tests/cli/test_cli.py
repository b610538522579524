"""`kninfer serve` options: flags, KNINFER_* environment, Knative's PORT; flags win."""

from __future__ import annotations

import subprocess
import sys

import httpx

from tests.support.servers import ServerProcess, free_port, server_env


def test_port_from_knative_env_and_name_from_kninfer_env(tmp_path):
    port = free_port()
    env = server_env(
        tmp_path, PORT=str(port), KNINFER_MODEL_NAME="flower", KNINFER_GRPC_PORT=str(free_port())
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "kninfer", "serve", "--host", "127.0.0.1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = ServerProcess([], env, tmp_path / "unused.log", http_port=port, process=process)
    server._log = open(server.log_path, "ab")  # noqa: SIM115 - closed by stop()
    try:
        server.wait_ready()
        assert httpx.get(f"{server.url}/v1/models").json() == {"models": ["flower"]}
    finally:
        assert server.stop() == 0


def test_flag_wins_over_environment(start_server):
    server = start_server("--model-name", "from-flag", env={"KNINFER_MODEL_NAME": "from-env"})
    assert httpx.get(f"{server.url}/v1/models").json() == {"models": ["from-flag"]}


def test_conflicting_options_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "kninfer", "serve", "--model-dir", "/a", "--storage-uri", "/b"],
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "give either --model-dir or --storage-uri, not both" in result.stderr


def test_unknown_predictor_family_is_a_usage_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "kninfer", "serve", "--predictor", "xgboost"],
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert (
        "--predictor must be sklearn, mlflow, pytorch or package.module:Class; got 'xgboost'"
    ) in result.stderr
