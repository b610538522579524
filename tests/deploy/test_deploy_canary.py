"""`kninfer canary`: the patches KServe documents, applied to recorded InferenceService documents,
the status table, and the kubectl invocations through a fake `kubectl` on PATH."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kninfer.deploy.canary import (
    CanaryError,
    promote_patch,
    rollback_patch,
    start_patch,
    status_report,
    traffic_rows,
)
from kninfer.deploy.config import DeployConfig
from kninfer.deploy.crd_store import SchemaStore
from kninfer.deploy.render import inference_service
from kninfer.deploy.validate import validate_document
from tests.support.paths import ROOT, SCHEMAS

NS = "kninfer"


def isvc_spec(kserve: str = "container") -> dict[str, Any]:
    return inference_service(
        DeployConfig.model_validate(
            {
                "name": "iris",
                "namespace": NS,
                "storage_uri": "gs://models/iris/v1",
                "kserve": kserve,
                "env": {"KNINFER_LOG_LEVEL": "INFO"},
            }
        )
    )


def recorded(spec: dict[str, Any], phase: str) -> dict[str, Any]:
    """An InferenceService as `kubectl get -o json` returns it, status fields as KServe 0.20
    writes them (status.components.<c>: latestCreated/Ready/Rolledout, previousRolledout,
    traffic[] copied from the Knative Service status; kserve inference_service_status.go)."""
    doc = copy.deepcopy(spec)
    doc["metadata"].update(
        generation=3,
        resourceVersion="81234",
        uid="5f0c8a4e-2b7e-4a53-9f0e-0a5d7c1c9b11",
        creationTimestamp="2026-11-20T10:00:00Z",
    )
    base = f"http://iris-predictor.{NS}.example.com"
    if phase == "canary":  # v2 rolled out at 10% next to v1
        component = {
            "latestCreatedRevision": "iris-predictor-00002",
            "latestReadyRevision": "iris-predictor-00002",
            "latestRolledoutRevision": "iris-predictor-00001",
            "traffic": [
                {
                    "latestRevision": True,
                    "percent": 10,
                    "revisionName": "iris-predictor-00002",
                    "tag": "latest",
                    "url": f"http://latest-iris-predictor.{NS}.example.com",
                },
                {
                    "latestRevision": False,
                    "percent": 90,
                    "revisionName": "iris-predictor-00001",
                    "tag": "prev",
                    "url": f"http://prev-iris-predictor.{NS}.example.com",
                },
            ],
            "url": base,
        }
    else:  # promoted: v2 at 100%, v1 recorded as the previous rollout
        component = {
            "latestCreatedRevision": "iris-predictor-00002",
            "latestReadyRevision": "iris-predictor-00002",
            "latestRolledoutRevision": "iris-predictor-00002",
            "previousRolledoutRevision": "iris-predictor-00001",
            "traffic": [
                {"latestRevision": True, "percent": 100, "revisionName": "iris-predictor-00002"}
            ],
            "url": base,
        }
    doc["status"] = {
        "address": {"url": f"http://iris.{NS}.svc.cluster.local"},
        "components": {"predictor": component},
        "conditions": [
            {
                "lastTransitionTime": "2026-11-20T10:05:00Z",
                "status": "True",
                "type": "PredictorReady",
            },
            {"lastTransitionTime": "2026-11-20T10:05:00Z", "status": "True", "type": "Ready"},
        ],
        "modelStatus": {
            "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
            "transitionStatus": "UpToDate",
        },
        "observedGeneration": 3,
        "url": f"http://iris.{NS}.example.com",
    }
    return doc


def apply_json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 add/replace/test, enough to check what the API server would do with our patch."""
    out = copy.deepcopy(doc)
    for op in ops:
        *parents, last = [
            p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")
        ]
        node: Any = out
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) else last
        if op["op"] == "test":
            assert node[key] == op["value"]
        elif op["op"] in ("add", "replace"):
            if op["op"] == "replace":
                assert key in node if isinstance(node, dict) else key < len(node)
            node[key] = op["value"]
    return out


def apply_merge_patch(doc: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return patch
    out = dict(doc) if isinstance(doc, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply_merge_patch(out.get(key), value)
    return out


@pytest.fixture(scope="module")
def store() -> SchemaStore:
    return SchemaStore(SCHEMAS)


def test_recorded_documents_match_the_crd(store: SchemaStore) -> None:
    for phase in ("canary", "promoted"):
        for kserve in ("container", "runtime"):
            doc = recorded(isvc_spec(kserve), phase)
            assert validate_document(doc, store, "recorded", 1) == []


def test_start_on_a_custom_container_replaces_storage_uri_env(store: SchemaStore) -> None:
    doc = recorded(isvc_spec(), "promoted")
    patch = start_patch(doc, "gs://models/iris/v2", 10)
    env = "/spec/predictor/containers/0/env"
    # env is sorted: KNINFER_LOG_LEVEL, PROTOCOL, STORAGE_URI
    assert patch.kind == "json"
    assert patch.body == [
        {"op": "test", "path": f"{env}/2/name", "value": "STORAGE_URI"},
        {"op": "replace", "path": f"{env}/2/value", "value": "gs://models/iris/v2"},
        {"op": "add", "path": "/spec/predictor/canaryTrafficPercent", "value": 10},
    ]
    patched = apply_json_patch(doc, patch.body)
    assert patched["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert {"name": "STORAGE_URI", "value": "gs://models/iris/v2"} in (
        patched["spec"]["predictor"]["containers"][0]["env"]
    )
    assert validate_document(patched, store, "patched", 1) == []


def test_start_on_a_runtime_model_sets_storage_uri(store: SchemaStore) -> None:
    doc = recorded(isvc_spec("runtime"), "promoted")
    patch = start_patch(doc, "gs://models/iris/v2", 25)
    assert patch.body == [
        {"op": "add", "path": "/spec/predictor/model/storageUri", "value": "gs://models/iris/v2"},
        {"op": "add", "path": "/spec/predictor/canaryTrafficPercent", "value": 25},
    ]
    patched = apply_json_patch(doc, patch.body)
    assert patched["spec"]["predictor"]["model"]["storageUri"] == "gs://models/iris/v2"
    assert validate_document(patched, store, "patched", 1) == []


def test_promote_removes_and_rollback_zeroes_the_percent() -> None:
    doc = apply_json_patch(
        recorded(isvc_spec(), "canary"),
        start_patch(recorded(isvc_spec(), "canary"), "gs://x", 10).body,
    )
    promoted = apply_merge_patch(doc, promote_patch().body)
    assert "canaryTrafficPercent" not in promoted["spec"]["predictor"]
    assert promote_patch().text() == '{"spec":{"predictor":{"canaryTrafficPercent":null}}}'
    rolled_back = apply_merge_patch(doc, rollback_patch().body)
    assert rolled_back["spec"]["predictor"]["canaryTrafficPercent"] == 0
    # Everything else is untouched.
    assert rolled_back["spec"]["predictor"]["containers"] == doc["spec"]["predictor"]["containers"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: None, "--percent must be within 0..100, got 101"),
        (
            lambda d: d["metadata"]["annotations"].update(
                {"serving.kserve.io/deploymentMode": "RawDeployment"}
            ),
            "canaryTrafficPercent needs Knative (serverless) deployment mode; this "
            "InferenceService "
            "uses RawDeployment",
        ),
        (
            lambda d: d["spec"]["predictor"]["containers"][0].pop("env"),
            "no storage URI to replace: spec has neither model.storageUri nor a container env "
            "STORAGE_URI",
        ),
    ],
)
def test_start_refuses_what_kserve_would_get_wrong(mutate: Any, message: str) -> None:
    doc = recorded(isvc_spec(), "promoted")
    mutate(doc)
    percent = 101 if "percent" in message else 10
    with pytest.raises(CanaryError) as error:
        start_patch(doc, "gs://x", percent)
    assert str(error.value) == message


def test_traffic_rows_during_canary_and_after_promotion() -> None:
    rows = traffic_rows(recorded(isvc_spec(), "canary"))
    assert [(r.revision, r.percent, r.tag, r.latest, r.rolled_out) for r in rows] == [
        ("iris-predictor-00002", 10, "latest", True, ""),
        ("iris-predictor-00001", 90, "prev", False, "latest"),
    ]
    rows = traffic_rows(recorded(isvc_spec(), "promoted"))
    assert [(r.revision, r.percent, r.rolled_out) for r in rows] == [
        ("iris-predictor-00002", 100, "latest")
    ]


def test_status_report_table() -> None:
    doc = recorded(isvc_spec(), "canary")
    doc["spec"]["predictor"]["canaryTrafficPercent"] = 10
    assert status_report(doc) == (
        "InferenceService kninfer/iris (predictor)\n"
        "  ready: True   url: http://iris.kninfer.example.com\n"
        "  spec canaryTrafficPercent: 10\n"
        "  latestCreated: iris-predictor-00002   latestReady: iris-predictor-00002\n"
        "  latestRolledout: iris-predictor-00001   previousRolledout: -\n"
        "\n"
        "  REVISION              PERCENT  TAG     LATEST  ROLLED-OUT\n"
        "  iris-predictor-00002  10%      latest  yes     -\n"
        "  iris-predictor-00001  90%      prev    no      latest\n"
    )


def test_status_before_reconciliation() -> None:
    doc = isvc_spec()
    assert status_report(doc).endswith(
        "  no traffic targets in status yet (not reconciled, or not Knative mode)\n"
    )


# --- the CLI against a fake kubectl -------------------------------------------------------------

FAKE_KUBECTL = """\
#!{python}
# Records its argv, answers `get` with a recorded InferenceService, `patch` like kubectl does.
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_KUBECTL_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if os.environ.get("FAKE_KUBECTL_FAIL"):
    sys.stderr.write(os.environ["FAKE_KUBECTL_FAIL"] + "\\n")
    sys.exit(1)
if "get" in args:
    sys.stdout.write(open(os.environ["FAKE_KUBECTL_ISVC"]).read())
elif "patch" in args:
    print("inferenceservice.serving.kserve.io/" + args[args.index("patch") + 2] + " patched")
"""


@pytest.fixture
def fake_kubectl(tmp_path: Path) -> dict[str, Any]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "kubectl"
    script.write_text(FAKE_KUBECTL.format(python=sys.executable))
    script.chmod(0o755)
    isvc = tmp_path / "isvc.json"
    isvc.write_text(json.dumps(recorded(isvc_spec(), "canary")))
    env = {k: v for k, v in os.environ.items() if k != "KUBECTL"}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        FAKE_KUBECTL_LOG=str(tmp_path / "argv.jsonl"),
        FAKE_KUBECTL_ISVC=str(isvc),
    )
    return env


def canary(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kninfer", "canary", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def calls(env: dict[str, str]) -> list[list[str]]:
    path = Path(env["FAKE_KUBECTL_LOG"])
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


GET = ["--namespace", NS, "get", "inferenceservice", "iris", "--output", "json"]


def test_cli_start_gets_then_patches(fake_kubectl: dict[str, str]) -> None:
    result = canary(
        fake_kubectl,
        "start",
        "--name",
        "iris",
        "-n",
        NS,
        "--storage-uri",
        "gs://models/iris/v3",
        "--percent",
        "20",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "inferenceservice.serving.kserve.io/iris patched\n"
    env = "/spec/predictor/containers/0/env/2"
    assert calls(fake_kubectl) == [
        GET,
        [
            "--namespace",
            NS,
            "patch",
            "inferenceservice",
            "iris",
            "--type",
            "json",
            "--patch",
            json.dumps(
                [
                    {"op": "test", "path": f"{env}/name", "value": "STORAGE_URI"},
                    {"op": "replace", "path": f"{env}/value", "value": "gs://models/iris/v3"},
                    {"op": "add", "path": "/spec/predictor/canaryTrafficPercent", "value": 20},
                ],
                separators=(",", ":"),
                sort_keys=True,
            ),
        ],
    ]


@pytest.mark.parametrize(
    ("action", "patch"),
    [
        ("promote", '{"spec":{"predictor":{"canaryTrafficPercent":null}}}'),
        ("rollback", '{"spec":{"predictor":{"canaryTrafficPercent":0}}}'),
    ],
)
def test_cli_promote_and_rollback_patch(
    fake_kubectl: dict[str, str], action: str, patch: str
) -> None:
    result = canary(fake_kubectl, action, "--name", "iris", "--namespace", NS)
    assert result.returncode == 0, result.stderr
    assert calls(fake_kubectl) == [
        [
            "--namespace",
            NS,
            "patch",
            "inferenceservice",
            "iris",
            "--type",
            "merge",
            "--patch",
            patch,
        ]
    ]


def test_cli_dry_run_prints_and_changes_nothing(fake_kubectl: dict[str, str]) -> None:
    result = canary(fake_kubectl, "rollback", "--name", "iris", "-n", NS, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        '{\n  "spec": {\n    "predictor": {\n      "canaryTrafficPercent": 0\n    }\n  }\n}\n'
        "kubectl --namespace kninfer patch inferenceservice iris --type merge --patch "
        '\'{"spec":{"predictor":{"canaryTrafficPercent":0}}}\'\n'
    )
    assert calls(fake_kubectl) == []
    # start --dry-run reads the live object (read-only) but patches nothing.
    result = canary(
        fake_kubectl,
        "start",
        "--name",
        "iris",
        "-n",
        NS,
        "--dry-run",
        "--storage-uri",
        "gs://x",
        "--percent",
        "5",
    )
    assert result.returncode == 0, result.stderr
    assert calls(fake_kubectl) == [GET]


def test_cli_status_table_and_json(fake_kubectl: dict[str, str]) -> None:
    result = canary(fake_kubectl, "status", "--name", "iris", "-n", NS)
    assert result.returncode == 0, result.stderr
    assert "  iris-predictor-00001  90%      prev    no      latest\n" in result.stdout
    as_json = canary(fake_kubectl, "status", "--name", "iris", "-n", NS, "-o", "json")
    assert json.loads(as_json.stdout) == [
        {
            "latest": True,
            "percent": 10,
            "revision": "iris-predictor-00002",
            "rolled_out": "",
            "tag": "latest",
        },
        {
            "latest": False,
            "percent": 90,
            "revision": "iris-predictor-00001",
            "rolled_out": "latest",
            "tag": "prev",
        },
    ]
    assert calls(fake_kubectl) == [GET, GET]


def test_cli_reports_kubectl_failure(fake_kubectl: dict[str, str]) -> None:
    fake_kubectl["FAKE_KUBECTL_FAIL"] = (
        'Error from server (NotFound): inferenceservices.serving.kserve.io "iris" not found'
    )
    result = canary(fake_kubectl, "promote", "--name", "iris", "-n", NS)
    assert result.returncode == 1
    bin_path = Path(fake_kubectl["PATH"].split(os.pathsep)[0]) / "kubectl"
    assert result.stderr == (
        f"kninfer canary promote: {bin_path} --namespace kninfer patch inferenceservice iris "
        '--type merge --patch \'{"spec":{"predictor":{"canaryTrafficPercent":null}}}\' '
        'exited 1: Error from server (NotFound): inferenceservices.serving.kserve.io "iris" '
        "not found\n"
    )


def test_cli_refuses_bad_percent_without_patching(fake_kubectl: dict[str, str]) -> None:
    result = canary(
        fake_kubectl,
        "start",
        "--name",
        "iris",
        "-n",
        NS,
        "--storage-uri",
        "gs://x",
        "--percent",
        "150",
    )
    assert result.returncode == 1
    assert result.stderr == "kninfer canary start: --percent must be within 0..100, got 150\n"
    assert calls(fake_kubectl) == [GET]


def test_cli_start_from_a_rendered_file_offline(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KUBECTL"}
    env["PATH"] = str(tmp_path)  # no kubectl anywhere: --from-file and --dry-run need none
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kninfer",
            "canary",
            "start",
            "--name",
            "iris-canary",
            "--from-file",
            "kserve/iris-canary.yaml",
            "--storage-uri",
            "gs://models/iris/v2",
            "--percent",
            "30",
            "--dry-run",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    body, end = json.JSONDecoder().raw_decode(result.stdout)
    assert result.stdout[end:].startswith(
        "\nkubectl --namespace kninfer patch inferenceservice iris-canary --type json --patch "
    )
    assert body == [
        {"op": "add", "path": "/spec/predictor/model/storageUri", "value": "gs://models/iris/v2"},
        {"op": "add", "path": "/spec/predictor/canaryTrafficPercent", "value": 30},
    ]
