"""The documentation's examples run: each block after a `<!-- doc-test: NAME -->` marker, in
README.md or any page under docs/ (a marker may move between them; each name is marked once).

A `console` block is a session: `$ curl ...` commands (a command runs on while its quotes are
open) and the output the docs show after each. Commands run for real through bash and curl,
against real `kninfer serve` processes on free ports (the docs' ports are swapped for them),
and each output must equal the docs': as JSON, floats to FLOAT_TOLERANCE, an `id` generated per
request excepted. A `python` block named `FILE.py` is written to FILE.py for the blocks after it.

The outputs shown are made by these same commands: `make docs-outputs` runs this module with
`--write-docs-outputs`, which writes what each command printed into the docs instead of
comparing, so a library upgrade that moves a number is one command and a reviewed diff.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

from tests.support.paths import ROOT
from tests.support.servers import ServerProcess, free_port, server_env, servers_started

README = ROOT / "README.md"
DOCS = ROOT / "docs"
MARKER = re.compile(
    r"<!-- doc-test: (?P<name>[\w.-]+) -->\n```(?P<lang>\w+)\n(?P<body>.*?)```", re.DOTALL
)
MARKER_LINE = re.compile(r"<!-- doc-test: [\w.-]+ -->")
# Made afresh for every request or event, or a digest of the model's files (its version, which a
# library's pickle format moves): compared by presence, not value.
GENERATED_KEYS = {"id", "time", "traceparent", "versions", "model_version"}
GENERATED_HEADERS = {"ce-id", "ce-time", "ce-traceparent", "date", "content-length"}
STATUS_NOTE = re.compile(r"\s+# HTTP \d+\s*$")  # the README's status notes after an output
# Relative and absolute: what a CPU with other vector units, or a BLAS built another way, may move
# in a probability at the locked versions; a library upgrade moves them far more (iris under
# scikit-learn 1.9 against 1.8: 1e-4), and then `make docs-outputs` writes the new figures.
FLOAT_TOLERANCE = {"rel_tol": 1e-6, "abs_tol": 1e-9}
# Every example the tests below run. A marker lost in a move, or one no test runs, fails
# test_marked_names_are_the_tested_ones.
EXAMPLES = (
    "iris",
    "inches.py",
    "inches",
    "pipeline",
    "save.py",
    "mlflow",
    "eventing.yaml",
    "features.json",
    "column_transformer.py",
    "kninfer.yaml",
    "linear.py",
    "linear",
    "event-send",
    "event-curl",
    "render-exposure",
    "exposure-public.yaml",
    "experiment-weights",
    "churn.py",
    "compile",
    "churn_train.py",
    "profile",
    "profile.py",
    "drifted.py",
    "drift-metrics",
    "monitoring.yaml",
    "psi-from-counters",
    "out-of-range",
    "mesh.yaml",
    "compiled.yaml",
    "tabular_net.py",
    "compile-pytorch",
)


class Step(NamedTuple):
    """One command of a console block, the output the docs show and where that output stands
    (lines [start, end) of the block's body)."""

    command: str
    expected: str
    start: int
    end: int


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def blocks() -> dict[str, str]:
    """NAME -> body of every marked block in README.md and docs/**/*.md."""
    found: dict[str, tuple[Path, str]] = {}
    for path in doc_files():
        text = path.read_text()
        matches = list(MARKER.finditer(text))
        if len(matches) != len(MARKER_LINE.findall(text)):
            raise AssertionError(
                f"{path.relative_to(ROOT)}: a doc-test marker is not directly "
                "followed by its fenced block"
            )
        for m in matches:
            if m["name"] in found:
                raise AssertionError(
                    f"doc-test {m['name']!r} is marked twice: in "
                    f"{found[m['name']][0].relative_to(ROOT)} and in "
                    f"{path.relative_to(ROOT)}"
                )
            found[m["name"]] = (path, m["body"])
    return {name: body for name, (_, body) in found.items()}


def session(body: str) -> list[Step]:
    """The commands of a console block, each with its expected output."""
    pairs: list[Step] = []
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            i += 1
            continue
        command = lines[i][2:]
        while command.count("'") % 2 or command.endswith("\\"):  # open quote or continuation
            i += 1
            command += "\n" + lines[i]
        i += 1
        start = i
        # The output runs to the next command or comment line; an HTTP head (curl -i) holds a
        # blank line before its body, so only trailing blank lines end it.
        while i < len(lines) and not lines[i].startswith(("$ ", "# ")):
            i += 1
        end = i
        while end > start and not lines[end - 1].strip():
            end -= 1
        output = "\n".join(lines[start:end])
        pairs.append(Step(command, STATUS_NOTE.sub("", output), start, end))
    return pairs


def same(actual: Any, expected: Any, path: str = "$") -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), path
        keys = set(expected) | set(actual)
        for key in sorted(keys & GENERATED_KEYS):
            assert key in actual and key in expected, f"{path}.{key}: {actual} vs {expected}"
            if isinstance(expected[key], list):  # versions: as many, whatever their digests
                assert len(actual[key]) == len(expected[key]), f"{path}.{key}: {actual[key]}"
        for key in sorted(keys - GENERATED_KEYS):
            assert key in actual and key in expected, f"{path}.{key}: {actual} vs {expected}"
            same(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{path}: {actual}"
        for n, (a, e) in enumerate(zip(actual, expected, strict=True)):
            same(a, e, f"{path}[{n}]")
    elif isinstance(expected, float) and not isinstance(actual, bool):
        assert math.isclose(actual, expected, **FLOAT_TOLERANCE), f"{path}: {actual}"
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def write_outputs(name: str, outputs: dict[int, str]) -> None:
    """Put each command's real output (by its index in block NAME) in the docs, in place of the
    output shown; a status note after the old output stays."""
    for path in doc_files():
        text = path.read_text()
        for m in MARKER.finditer(text):
            if m["name"] != name:
                continue
            lines = m["body"].splitlines()
            for index, step in reversed(list(enumerate(session(m["body"])))):
                if index not in outputs:
                    continue
                note = STATUS_NOTE.search(lines[step.end - 1]) if step.end > step.start else None
                lines[step.start : step.end] = [outputs[index] + (note[0] if note else "")]
            body = "\n".join(lines) + "\n"
            path.write_text(text[: m.start("body")] + body + text[m.end("body") :])
            return
    raise AssertionError(f"doc-test {name!r} not found")


def same_http(actual: str, expected: str) -> None:
    """`curl -i` output: the status line, the headers (generated ones by presence) and the body
    as JSON."""

    def parts(text: str) -> tuple[str, dict[str, str], str]:
        head, _, body = text.replace("\r\n", "\n").partition("\n\n")
        status, *fields = head.splitlines()
        headers = dict(f.split(": ", 1) for f in fields)
        return status, {k.lower(): v for k, v in headers.items()}, body

    status, headers, body = parts(actual)
    want_status, want_headers, want_body = parts(expected)
    assert status == want_status, (status, want_status)
    assert sorted(headers) == sorted(want_headers), (sorted(headers), sorted(want_headers))
    for key, value in want_headers.items():
        if key not in GENERATED_HEADERS:
            assert headers[key] == value, (key, headers[key], value)
    same(json.loads(body), json.loads(want_body))


def same_output(command: str, actual: str, expected: str) -> None:
    if re.match(r"curl -s?i ", command):
        same_http(actual, expected)
    else:
        same(json.loads(actual), json.loads(expected))


def run_session(
    name: str,
    steps: list[Step],
    ports: dict[str, int],
    cwd: Path,
    config: pytest.Config,
    first: int = 0,
) -> list[str]:
    """Run each command; compare its output with the docs', or write it into them under
    --write-docs-outputs. FIRST is the index of steps[0] in the block (for writing). `cat FILE`
    writes the output shown to FILE (the docs show what the commands after it read); curl and
    `kninfer` commands run for real. Returns what each command printed."""
    written: dict[int, str] = {}
    printed: list[str] = []
    for index, step in enumerate(steps, start=first):
        command = step.command
        for readme_port, port in ports.items():
            command = command.replace(f"localhost:{readme_port}", f"127.0.0.1:{port}")
            command = command.replace(f"127.0.0.1:{readme_port}", f"127.0.0.1:{port}")
        program = shlex.split(command)[0]
        if program == "cat":
            (cwd / shlex.split(command)[1]).write_text(step.expected + "\n")
            printed.append(step.expected)
            continue
        assert program in ("curl", "kninfer"), command
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        done = subprocess.run(
            ["bash", "-c", command], cwd=cwd, capture_output=True, timeout=60, check=False, env=env
        )
        assert done.returncode == 0, (command, done.stderr)
        actual = done.stdout.decode().replace("\r\n", "\n").strip()
        printed.append(actual)
        if not config.getoption("--write-docs-outputs"):
            same_output(command, actual, step.expected)
            continue
        try:  # an output within tolerance of the docs' stays as it is: no churn of ids or digits
            same_output(command, actual, step.expected)
        except (AssertionError, json.JSONDecodeError, ValueError):
            written[index] = actual
    if written:
        write_outputs(name, written)
    return printed


def test_quick_start_commands(
    iris_server: ServerProcess, tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    pairs = session(blocks()["iris"])
    assert len(pairs) == 3
    run_session("iris", pairs, {"8080": iris_server.http_port}, tmp_path, pytestconfig)


def test_custom_transformer_example(
    iris_server: ServerProcess, tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    found = blocks()
    (tmp_path / "inches.py").write_text(found["inches.py"])
    serve_step, *curls = session(found["inches"])
    serve = serve_step.command
    http, grpc_port = free_port(), free_port()
    serve = serve.replace("127.0.0.1:8080", f"127.0.0.1:{iris_server.http_port}")
    serve = serve.replace("--http-port 8090", f"--http-port {http}").replace(
        "--grpc-port 8091", f"--grpc-port {grpc_port}"
    )
    env = server_env(tmp_path)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = (tmp_path / "transformer.log").open("wb")
    # bash runs a lone command by exec: the process is kninfer itself, stopped by its PID.
    process = subprocess.Popen(
        ["bash", "-c", f"{serve} --host 127.0.0.1"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    transformer = ServerProcess(
        [], env, tmp_path / "transformer.log", http_port=http, grpc_port=grpc_port, process=process
    )
    try:
        transformer.wait_ready(60)
        assert len(curls) == 4
        run_session("inches", curls, {"8090": http}, tmp_path, pytestconfig, first=1)
    finally:
        process.terminate()
        assert process.wait(30) == 0, transformer.log()
        log.close()


@pytest.mark.parametrize("name", EXAMPLES)
def test_marked_blocks_exist(name: str) -> None:
    assert name in blocks()


def test_marked_names_are_the_tested_ones() -> None:
    """The names marked across README.md and docs/ are exactly the ones these tests run."""
    assert sorted(blocks()) == sorted(EXAMPLES)


def test_pipeline_commands(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    """`make serve-pipeline`'s two processes: the iris predictor and the iris transformer."""
    pairs = session(blocks()["pipeline"])
    assert len(pairs) == 4
    with servers_started({"predictor": []}, tmp_path) as predictor:
        host = f"127.0.0.1:{predictor['predictor'].http_port}"
        with servers_started(
            {
                "transformer": [
                    "--transformer",
                    "iris",
                    "--predictor-host",
                    host,
                    "--predictor-protocol",
                    "v2",
                ]
            },
            tmp_path,
        ) as transformer:
            run_session(
                "pipeline",
                pairs,
                {"8090": transformer["transformer"].http_port},
                tmp_path,
                pytestconfig,
            )


def test_mlflow_runnable_example(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    pytest.importorskip("mlflow.sklearn", reason="the mlflow extra is not installed")
    found = blocks()
    (tmp_path / "save.py").write_text(found["save.py"])
    install, serve, *curls = session(found["mlflow"])
    assert install.command == "pip install -e '.[mlflow]' && python save.py"  # installed already
    saved = subprocess.run(
        [sys.executable, "save.py"], cwd=tmp_path, capture_output=True, timeout=300, check=False
    )
    assert saved.returncode == 0, saved.stderr.decode()[-3000:]
    args = shlex.split(serve.command.removesuffix("&"))
    assert args[:2] == ["kninfer", "serve"]
    model_args = [
        str(tmp_path / a) if a == "iris-mlflow" and i and args[i - 1] == "--model-dir" else a
        for i, a in enumerate(args[2:], start=2)
    ]
    with servers_started({"mlflow": model_args}, tmp_path, timeout=180) as started:
        assert len(curls) == 5
        run_session(
            "mlflow", curls, {"8080": started["mlflow"].http_port}, tmp_path, pytestconfig, first=2
        )


def test_eventing_yaml_validates(tmp_path: Path) -> None:
    (tmp_path / "eventing.yaml").write_text(blocks()["eventing.yaml"])
    done = subprocess.run(
        [sys.executable, "-m", "kninfer", "validate", str(tmp_path / "eventing.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 document(s) in 1 file(s): valid" in done.stdout + done.stderr


def test_feature_specs_load(tmp_path: Path) -> None:
    from kninfer.transformers.features import FeatureSpec

    found = blocks()
    (tmp_path / "hand").mkdir()
    (tmp_path / "hand" / "features.json").write_text(found["features.json"])
    spec = FeatureSpec.load(tmp_path / "hand")
    assert [f.name for f in spec.fields] == ["age", "colour", "size", "smoker", "income"]
    (tmp_path / "spec").mkdir()
    (tmp_path / "column_transformer.py").write_text(found["column_transformer.py"])
    done = subprocess.run(
        [sys.executable, "column_transformer.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    fitted = FeatureSpec.load(tmp_path / "spec")
    assert [f.name for f in fitted.fields] == ["age", "city", "height"]


def test_declared_spec_snippet_parses() -> None:
    import yaml

    from kninfer.predictors.spec import parse_spec

    spec = parse_spec(yaml.safe_load(blocks()["kninfer.yaml"]), "doc-test kninfer.yaml")
    assert spec.inputs is not None and spec.inputs[0].shape == (-1, 4)
    assert (spec.module, spec.module_kwargs) == ("tiny_mlp:MLP", {"hidden": 16})


def test_custom_predictor_example(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    """docs/api.md's predictor, written only against the public API, served by its CLI line."""
    import numpy as np

    found = blocks()
    (tmp_path / "linear.py").write_text(found["linear.py"])
    model = tmp_path / "linear-model"
    model.mkdir()
    np.save(model / "weights.npy", np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    np.save(model / "bias.npy", np.array([0.5, -0.5]))
    serve_step, *curls = session(found["linear"])
    args = shlex.split(serve_step.command.removeprefix("PYTHONPATH=. "))
    assert args[:2] == ["kninfer", "serve"]
    args = [str(model) if a == "linear-model" else a for a in args[2:]]
    env = server_env(tmp_path)
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{env.get('PYTHONPATH', '')}"
    server = ServerProcess(args, env, tmp_path / "linear.log").start(timeout=120)
    try:
        assert len(curls) == 3
        run_session("linear", curls, {"8080": server.http_port}, tmp_path, pytestconfig, first=1)
    finally:
        server.stop()


def test_eventing_worked_example(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    """docs/eventing.md: `kninfer event send` in binary and structured mode (the redelivery is
    answered with the first reply, the same event id), then curl in binary mode and a bad event,
    against `K_SERVICE=iris-predictor kninfer serve` as the page says."""
    found = blocks()
    env = server_env(tmp_path)
    env["K_SERVICE"] = "iris-predictor"
    server = ServerProcess([], env, tmp_path / "events.log").start(timeout=120)
    try:
        ports = {"8080": server.http_port}
        send = session(found["event-send"])
        assert [shlex.split(s.command)[:3] for s in send] == [
            ["cat", "request.json"],
            ["kninfer", "event", "send"],
            ["kninfer", "event", "send"],
        ]
        _, first, again = run_session("event-send", send, ports, tmp_path, pytestconfig)
        assert json.loads(first)["id"] == json.loads(again)["id"]  # the cached reply
        # ... and the model ran once, as the page says (request_predict_seconds_count at 1).
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        counts = [
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("request_predict_seconds_count")
        ]
        assert counts == [1.0], counts
        curls = session(found["event-curl"])
        assert len(curls) == 2
        run_session("event-curl", curls, ports, tmp_path, pytestconfig)
    finally:
        server.stop()


def run_console_exactly(name: str, cwd: Path) -> None:
    """A console block of `kninfer` commands whose output is text, not JSON: each command runs
    for real and prints exactly what the docs show."""
    steps = session(blocks()[name])
    assert steps
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("KUBECTL", None)
    for step in steps:
        assert shlex.split(step.command)[0] == "kninfer", step.command
        done = subprocess.run(
            ["bash", "-c", step.command],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
        )
        assert done.returncode == 0, (step.command, done.stderr)
        assert done.stdout.rstrip("\n") == step.expected, step.command


def test_render_prints_each_services_exposure(tmp_path: Path) -> None:
    """docs/deploy.md, "Exposure": the render of deploy/examples/iris-events.yaml, as shown."""
    examples = tmp_path / "deploy" / "examples"
    examples.mkdir(parents=True)
    (examples / "iris-events.yaml").write_text(
        (ROOT / "deploy" / "examples" / "iris-events.yaml").read_text()
    )
    run_console_exactly("render-exposure", tmp_path)
    assert (tmp_path / "build" / "deploy" / "kserve" / "iris-events.yaml").is_file()


def test_public_config_publishes_its_entry_only(tmp_path: Path) -> None:
    """docs/deploy.md's `exposure: public` config renders, validates, and publishes only the
    InferenceService and the transformer; the predictor behind it stays cluster-local."""
    (tmp_path / "web.yaml").write_text(blocks()["exposure-public.yaml"])
    done = subprocess.run(
        [sys.executable, "-m", "kninfer", "render", "web.yaml", "-o", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    inside = "outside the cluster through the ingress domain; inside it"
    assert done.stdout.splitlines()[2:] == [
        f"iris-web: public ({inside} http://iris-web.kninfer.svc.cluster.local)",
        "iris-web-predictor: cluster-local (http://iris-web-predictor.kninfer.svc.cluster.local)",
        f"iris-web-transformer: public ({inside} "
        "http://iris-web-transformer.kninfer.svc.cluster.local)",
    ]
    checked = subprocess.run(
        [sys.executable, "-m", "kninfer", "validate", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "3 document(s) in 2 file(s): valid" in checked.stderr


def render_and_validate(tmp_path: Path, block: str) -> None:
    """The page's config `block` as churn.yaml, rendered to out/ and validated there by the
    real commands."""
    (tmp_path / "churn.yaml").write_text(blocks()[block])
    for command in (["render", "churn.yaml", "-o", "out"], ["validate", "out"]):
        done = subprocess.run(
            [sys.executable, "-m", "kninfer", *command],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_compiled_config_renders_the_onnx_image(tmp_path: Path) -> None:
    """docs/compile.md, "The onnx image": the `compiled: true` config renders the onnx image with
    `--runtime onnx` in both variants, and validates."""
    import yaml

    render_and_validate(tmp_path, "compiled.yaml")
    for variant in ("kserve", "knative"):
        (doc,) = yaml.safe_load_all((tmp_path / "out" / variant / "churn.yaml").read_text())
        spec = doc["spec"]
        (container,) = (
            spec["predictor"]["containers"]
            if variant == "kserve"
            else spec["template"]["spec"]["containers"]
        )
        assert container["image"] == "ghcr.io/kninfer/kninfer:0.1.0-onnx"
        assert container["args"][:5] == ["serve", "--predictor", "sklearn", "--runtime", "onnx"]


def test_mesh_config_renders_the_policies_the_page_shows(tmp_path: Path) -> None:
    """docs/deploy.md, "Private to named callers": the `mesh` config renders an
    AuthorizationPolicy per workload into each variant's file, prints the lines the page shows,
    and validates against the vendored Istio CRD."""
    import yaml

    (tmp_path / "private.yaml").write_text(blocks()["mesh.yaml"])
    done = subprocess.run(
        [sys.executable, "-m", "kninfer", "render", "private.yaml", "-o", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    page = (DOCS / "deploy.md").read_text()
    shown = [
        line
        for line in page.splitlines()
        if line.startswith("iris-private-") and "AuthorizationPolicy" in line
    ]
    assert len(shown) == 2
    printed = done.stdout.splitlines()
    assert all(line in printed for line in shown), printed
    for variant in ("kserve", "knative"):
        docs = list(
            yaml.safe_load_all((tmp_path / "out" / variant / "iris-private.yaml").read_text())
        )
        found = {d["metadata"]["name"]: d for d in docs if d["kind"] == "AuthorizationPolicy"}
        assert sorted(found) == ["iris-private-predictor", "iris-private-transformer"]
        first = found["iris-private-transformer"]["spec"]["rules"][0]["from"]
        assert first == [
            {
                "source": {
                    "principals": [
                        "cluster.local/ns/shop/sa/checkout",
                        "cluster.local/ns/knative-eventing/sa/mt-broker-filter",
                    ]
                }
            },
            {"source": {"namespaces": ["reports"]}},
        ]
    checked = subprocess.run(
        [sys.executable, "-m", "kninfer", "validate", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "12 document(s) in 3 file(s): valid" in checked.stderr


def test_experiment_weights_example() -> None:
    """docs/deploy.md, "A/B": `kninfer experiment status` and `weights --dry-run` on the
    checked-in graph, offline, print what the docs show."""
    run_console_exactly("experiment-weights", ROOT)


def test_compile_example(tmp_path: Path) -> None:
    """docs/compile.md: the model the page builds compiles as the page shows."""
    pytest.importorskip("skl2onnx", reason="the compile extra is not installed")
    compile_as_shown(tmp_path, "churn.py", "compile", "kninfer compile churn")
    assert (tmp_path / "churn" / "model.onnx").is_file()


def test_compile_pytorch_example(tmp_path: Path) -> None:
    """docs/compile.md, "PyTorch models": the network the page saves compiles as the page shows,
    its class file pinned beside its weights."""
    pytest.importorskip("torch", reason="the pytorch extra is not installed")
    pytest.importorskip("onnxscript", reason="the compile extra is not installed")
    compile_as_shown(tmp_path, "tabular_net.py", "compile-pytorch", "kninfer compile net")
    record = json.loads((tmp_path / "net" / "compile.json").read_text())
    assert record["source"]["module_file"] == "tabular_net.py"
    assert [o["name"] for o in record["outputs"]] == ["logits", "embedding"]


def compile_as_shown(tmp_path: Path, script: str, block: str, command: str) -> None:
    """Run the page's `script`, then its `block` of `kninfer compile`, and compare the output.
    The differences and the model file's hash move with the CPU and the library versions:
    those are compared by shape, the rest of each line as written."""
    found = blocks()
    (tmp_path / script).write_text(found[script])
    saved = subprocess.run(
        [sys.executable, script], cwd=tmp_path, capture_output=True, timeout=120, check=False
    )
    assert saved.returncode == 0, saved.stderr.decode()[-3000:]
    (step,) = session(found[block])
    assert step.command == command
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    done = subprocess.run(
        ["bash", "-c", step.command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr

    def shape(text: str) -> str:
        text = re.sub(r"max \|diff\| [^,;]+, \S+ (of|times) the", "max |diff| D, P of the", text)
        return re.sub(r"\b[0-9a-f]{64}\b", "SHA256", text.strip())

    assert shape(done.stdout) == shape(step.expected)


METRIC_LINE = re.compile(r"(?P<name>\w+)\{(?P<labels>[^}]*)\} (?P<value>\S+)")


def metric_samples(text: str) -> dict[tuple[str, frozenset[str]], float]:
    """Prometheus text lines by (name, labels other than `version`: the served version is a
    digest of the model directory, which holds a profile written at test time)."""
    samples = {}
    for m in METRIC_LINE.finditer(text):
        labels = frozenset(
            label for label in m["labels"].split(",") if not label.startswith("version=")
        )
        samples[(m["name"], labels)] = float(m["value"])
    return samples


def test_drift_monitoring_example(tmp_path: Path) -> None:
    """docs/monitoring.md end to end: the churn model and its training data, `kninfer profile`
    printing what the page shows, the Python form writing the same profile, then the model
    served with it, `drifted.py` sending its 1,200 rows, and `/metrics` holding each line shown
    (counts exactly, PSI to FLOAT_TOLERANCE)."""
    found = blocks()
    for name in ("churn_train.py", "profile.py", "drifted.py"):
        (tmp_path / name).write_text(found[name])

    def python(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, (args, done.stderr[-3000:])

    python("churn_train.py")
    run_console_exactly("profile", tmp_path)
    profile_path = tmp_path / "churn" / "drift_profile.json"
    from_cli = json.loads(profile_path.read_text())
    python("profile.py")
    from_python = json.loads(profile_path.read_text())
    for profile in (from_cli, from_python):
        profile.pop("created")
        profile.pop("source")  # the CLI names its --data file; the Python form has no file
    assert from_python == from_cli

    serve = [
        "--predictor",
        "sklearn",
        "--model-dir",
        str(tmp_path / "churn"),
        "--model-name",
        "churn",
    ]
    with servers_started({"churn": serve}, tmp_path, timeout=180) as started:
        python("drifted.py", started["churn"].url)
        served = metric_samples(httpx.get(f"{started['churn'].url}/metrics", timeout=30).text)
    shown = metric_samples(found["drift-metrics"])
    assert shown
    for key, value in shown.items():
        assert key in served, key
        assert math.isclose(served[key], value, **FLOAT_TOLERANCE), (key, served[key], value)


def test_monitoring_config_renders_and_validates(tmp_path: Path) -> None:
    """docs/monitoring.md's `monitoring` config renders the PodMonitor, the PrometheusRule with
    the thresholds the page states, and the dashboard, all valid against the CRDs."""
    import yaml

    render_and_validate(tmp_path, "monitoring.yaml")
    docs = list(yaml.safe_load_all((tmp_path / "out" / "monitoring" / "churn.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["PodMonitor", "PrometheusRule", "ConfigMap"]
    rules = {r.get("alert") or r["record"]: r for r in docs[1]["spec"]["groups"][0]["rules"]}
    assert rules["KninferFeatureDrift"]["expr"].endswith("> 0.25")
    assert rules["KninferFeatureDrift"]["for"] == "15m"
    assert rules["KninferErrors"]["expr"].endswith("> 0.05")
    assert rules["KninferErrors"]["for"] == "10m"
    assert docs[0]["metadata"]["labels"]["release"] == "prometheus"


@pytest.mark.parametrize("name", ["psi-from-counters", "out-of-range"])
def test_monitoring_promql_parses_over_exported_metrics(name: str) -> None:
    from tests.deploy.test_deploy_monitoring import exported_metrics, metrics_read

    read = metrics_read(blocks()[name])
    assert read and read <= exported_metrics(), read
