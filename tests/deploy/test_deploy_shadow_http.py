"""A shadow of HTTP traffic end to end, as far as one machine allows: the rendered config's
baseline and candidate as two real `kninfer serve` processes with their payload loggers on, and
a relay in this test standing in for the Broker: it keeps every event it is sent and delivers
each one that matches the rendered Trigger's filter to the Trigger's subscriber path on the
candidate, in binary mode as the Broker does. The router is Knative Eventing's and is not run
here; the Trigger's filter and subscriber are read from the rendered manifest."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
import yaml
from cloudevents.http import from_http
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from kninfer.deploy.config import DeployConfig
from kninfer.deploy.render import eventing_documents, kserve_documents
from tests.support.paths import ROOT
from tests.support.servers import ServerProcess, server_env

LOGGER_REQUEST = "org.kubeflow.serving.inference.request"
LOGGER_RESPONSE = "org.kubeflow.serving.inference.response"


class Relay:
    """The Broker's part: every event posted here is kept; one matching `exact` (a Trigger's
    `filters[0].exact`) is also posted, headers and body as received, to `deliver_to`."""

    def __init__(self, exact: dict[str, str]) -> None:
        self.events: list[Any] = []
        self.delivered: list[int] = []  # the candidate's status per delivery
        self.deliver_to = ""
        self.lock = threading.Lock()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                event = from_http(headers, body)
                with relay.lock:
                    relay.events.append(event)
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()
                if all(event.get(k) == v for k, v in exact.items()):
                    forwarded = {
                        k: v
                        for k, v in headers.items()
                        if k.startswith("ce-") or k == "content-type"
                    }
                    reply = httpx.post(
                        relay.deliver_to, headers=forwarded, content=body, timeout=30
                    )
                    with relay.lock:
                        relay.delivered.append(reply.status_code)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def of(self, service: str, kind: str) -> list[Any]:
        with self.lock:
            return [
                e for e in self.events if e["inferenceservicename"] == service and e["type"] == kind
            ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two iris classifiers that disagree on some rows: the baseline and the candidate."""
    features, labels = load_iris(return_X_y=True)
    root = tmp_path_factory.mktemp("shadow-models")
    fitted = {
        "baseline": LogisticRegression(max_iter=500).fit(features, labels),
        "candidate": DecisionTreeClassifier(max_depth=1, random_state=0).fit(features, labels),
    }
    for name, model in fitted.items():
        (root / name).mkdir()
        joblib.dump(model, root / name / "model.joblib")
    return {"root": root, "fitted": fitted, "features": features}


def rendered() -> tuple[DeployConfig, dict[str, Any]]:
    config = DeployConfig.model_validate(
        yaml.safe_load((ROOT / "deploy" / "examples" / "iris-http-shadow.yaml").read_text())
    )
    (trigger,) = [d for d in eventing_documents(config) if d["kind"] == "Trigger"]
    return config, trigger


def predictor_flags(config: DeployConfig, isvc: str) -> list[str]:
    """The payload-logging flags the rendered InferenceService gives its predictor."""
    (doc,) = [d for d in kserve_documents(config) if d["metadata"]["name"] == isvc]
    args: list[str] = doc["spec"]["predictor"]["containers"][0]["args"]
    at = args.index("--logger-url")
    return args[at : at + 4]


@pytest.fixture()
def shadowed(models: dict[str, Any], tmp_path: Path) -> Iterator[tuple[Relay, ServerProcess]]:
    config, trigger = rendered()
    relay = Relay(trigger["spec"]["filters"][0]["exact"])
    servers: dict[str, list[str]] = {}
    envs = {}
    for role, isvc in (("baseline", config.name), ("candidate", f"{config.name}-candidate")):
        flags = predictor_flags(config, isvc)
        assert flags[0] == "--logger-url" and flags[2] == "--logger-namespace"
        servers[role] = [
            "--predictor",
            "sklearn",
            "--model-dir",
            str(models["root"] / role),
            "--model-name",
            config.served_model,
            "--model-version",
            role,
            "--logger-url",
            relay.url,
            "--logger-namespace",
            flags[3],
        ]
        # Knative sets K_SERVICE; the logger names the InferenceService after it.
        envs[role] = server_env(tmp_path, K_SERVICE=f"{isvc}-predictor")
    started: dict[str, ServerProcess] = {}
    try:
        for role, args in servers.items():
            started[role] = ServerProcess(args, envs[role], tmp_path / f"{role}.log").start(
                timeout=120
            )
        subscriber = trigger["spec"]["subscriber"]
        assert subscriber["ref"]["name"] == f"{config.name}-candidate-predictor"
        relay.deliver_to = started["candidate"].url + subscriber["uri"]
        yield relay, started["baseline"]
    finally:
        for server in started.values():
            server.stop()
        relay.close()


def wait(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_the_candidate_answers_a_copy_of_each_request_joined_by_requestid(
    shadowed: tuple[Relay, ServerProcess], models: dict[str, Any]
) -> None:
    relay, baseline = shadowed
    config, _ = rendered()
    rows = models["features"][::5]  # 30 rows, on which the two models disagree in places
    fitted = models["fitted"]
    answers = []
    for start in range(0, len(rows), 3):
        chunk = rows[start : start + 3]
        body = {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": list(chunk.shape),
                    "datatype": "FP64",
                    "data": chunk.ravel().tolist(),
                }
            ]
        }
        reply = httpx.post(f"{baseline.url}/v2/models/iris/infer", json=body, timeout=30)
        assert reply.status_code == 200, reply.text
        answers.append(reply.json())
    count = len(answers)
    wait(lambda: len(relay.of(f"{config.name}-candidate", LOGGER_RESPONSE)) >= count)
    time.sleep(0.3)  # an extra event would arrive now

    # The callers got the baseline's answers.
    labels = [a["outputs"][0]["data"] for a in answers]
    assert sum(labels, []) == fitted["baseline"].predict(rows).tolist()
    requests = relay.of(config.name, LOGGER_REQUEST)
    responses = relay.of(config.name, LOGGER_RESPONSE)
    shadow = relay.of(f"{config.name}-candidate", LOGGER_RESPONSE)
    assert len(requests) == len(responses) == len(shadow) == count
    assert relay.delivered == [200] * count  # every copy delivered, none of the candidate's
    # Joined on requestid: the candidate's answer to each copy is the candidate model's, and
    # its events say which version answered.
    by_request = {e["requestid"]: e for e in requests}
    baseline_answers = {e["requestid"]: e for e in responses}
    disagreements = 0
    for event in shadow:
        assert event["modelversion"] == "candidate"
        request = by_request[event["requestid"]]
        assert baseline_answers[event["requestid"]]["modelversion"] == "baseline"
        sent = request.data["inputs"][0]
        x = np.asarray(sent["data"], dtype=np.float64).reshape(sent["shape"])
        got = event.data["outputs"][0]["data"]
        assert got == fitted["candidate"].predict(x).tolist()
        disagreements += got != baseline_answers[event["requestid"]].data["outputs"][0]["data"]
    assert disagreements  # the comparison the shadow exists for has something to show
