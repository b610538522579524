"""scikit-learn text models: a Pipeline led by a text vectorizer takes raw strings.

`Pipeline(TfidfVectorizer, LogisticRegression)` fitted on a list of strings, saved with joblib in a
temp dir and served by a real `kninfer serve` (nothing but `--model-dir`): its metadata states one
BYTES input of shape [-1], and V2 JSON, V2 binary and gRPC (tritonclient), the V2 gRPC stub and V1
`{"instances": ["text", ...]}` all answer what the pipeline answers in process. Numbers, a wrong
shape and bytes that are not UTF-8 are 400s naming the input, never 500s. A declared input
(`--input-spec`, `kninfer.yaml`) is honoured, and one the model cannot take is refused at start.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import joblib
import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from tests.support.servers import ServerProcess, grpc_stub, server_env, triton_infer

DOCS = [
    "a good film with a great plot",
    "bad acting and an awful plot",
    "what a great cast",
    "terrible, boring film",
    "the plot was fine",
    "an average film, fine acting",
    "great, great, great",
    "awful and boring",
]
LABELS = ["pos", "neg", "pos", "neg", "mixed", "mixed", "pos", "neg"]
REQUEST = ["a great plot", "boring acting", "fine film", "nothing known here"]
V2 = "/v2/models/text/infer"
V1 = "/v1/models/text:predict"


def text_pipeline() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=500)).fit(DOCS, LABELS)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("text-model")
    joblib.dump(text_pipeline(), path / "model.joblib")
    return path


@pytest.fixture(scope="module")
def model(model_dir: Path) -> Any:
    return joblib.load(model_dir / "model.joblib")


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("text-server")
    proc = ServerProcess(
        ["--predictor", "sklearn", "--model-dir", str(model_dir), "--model-name", "text"],
        server_env(tmp),
        tmp / "server.log",
    ).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def bytes_input(
    data: list[Any],
    shape: list[int] | None = None,
    name: str = "input-0",
) -> dict[str, Any]:
    return {"name": name, "datatype": "BYTES", "shape": shape or [len(data)], "data": data}


def test_metadata_states_one_bytes_input(server: ServerProcess) -> None:
    meta = httpx.get(f"{server.url}/v2/models/text").json()
    assert meta["inputs"] == [{"name": "input-0", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "BYTES", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ]


@pytest.mark.parametrize("shape", [[4], [4, 1]], ids=["flat", "rows-of-one"])
def test_v2_json_bytes_match_the_pipeline(
    server: ServerProcess, model: Any, shape: list[int]
) -> None:
    data = REQUEST if len(shape) == 1 else [[t] for t in REQUEST]
    body = {
        "inputs": [bytes_input(data, shape)],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }
    reply = httpx.post(f"{server.url}{V2}", json=body)
    assert reply.status_code == 200, reply.text
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    assert outputs["predict"]["data"] == model.predict(REQUEST).tolist()
    assert outputs["predict_proba"]["shape"] == [4, 3]
    np.testing.assert_allclose(
        np.asarray(outputs["predict_proba"]["data"]).reshape(4, 3),
        model.predict_proba(REQUEST),
        rtol=1e-12,
    )


def test_tritonclient_http_binary_and_grpc_match_the_pipeline(
    server: ServerProcess, model: Any
) -> None:
    expected = model.predict(REQUEST).tolist()
    for protocol, url in (("http", f"127.0.0.1:{server.http_port}"), ("grpc", server.grpc_target)):
        answer = triton_infer(
            {
                "protocol": protocol,
                "url": url,
                "model": "text",
                "inputs": [bytes_input(REQUEST)],
                "outputs": ["predict"],
            }
        )
        assert answer == {"outputs": {"predict": expected}}, protocol


def grpc_text(values: list[bytes]) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="input-0", datatype="BYTES", shape=[len(values)]
    )
    tensor.contents.bytes_contents.extend(values)
    return pb.ModelInferRequest(model_name="text", inputs=[tensor])


def raw_strings(raw: bytes) -> list[str]:
    """A raw BYTES tensor (each value a 4-byte little-endian length, then its bytes)."""
    values, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        values.append(raw[offset + 4 : offset + 4 + length].decode())
        offset += 4 + length
    return values


def test_grpc_bytes_contents_match_and_non_utf8_is_invalid(
    server: ServerProcess, model: Any
) -> None:
    with grpc_stub(server.grpc_target) as stub:
        answer = stub.ModelInfer(grpc_text([t.encode() for t in REQUEST]), timeout=30)
        assert raw_strings(answer.raw_output_contents[0]) == model.predict(REQUEST).tolist()
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(grpc_text([b"fine", b"caf\xe9"]), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "input 'input-0': row 1 is not UTF-8 text"


def test_v1_strings_match_the_pipeline(server: ServerProcess, model: Any) -> None:
    expected = {"predictions": model.predict(REQUEST).tolist()}
    url = f"{server.url}{V1}"
    assert httpx.post(url, json={"instances": REQUEST}).json() == expected
    assert httpx.post(url, json={"instances": [[t] for t in REQUEST]}).json() == expected
    assert httpx.post(url, json={"inputs": REQUEST}).json() == expected


def binary_bytes(*values: bytes) -> tuple[dict[str, str], bytes]:
    """A V2 binary-extension body carrying one BYTES tensor (4-byte length, then the bytes)."""
    raw = b"".join(struct.pack("<I", len(v)) + v for v in values)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [len(values)],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    return {"inference-header-content-length": str(len(header))}, header + raw


BAD_INPUTS = [
    pytest.param(
        V2,
        {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [2, 1], "data": [1.0, 2.0]}]},
        "input 'input-0' has datatype FP64; expected one of BYTES",
        id="v2-numbers",
    ),
    pytest.param(
        V2,
        {"inputs": [{"name": "input-0", "datatype": "INT64", "shape": [2], "data": [1, 2]}]},
        "input 'input-0' has datatype INT64; expected one of BYTES",
        id="v2-integers",
    ),
    pytest.param(
        V2,
        {"inputs": [bytes_input(REQUEST, [2, 2])]},
        "input 'input-0' has shape [2, 2]; expected [-1] (-1 is any size)",
        id="v2-wrong-shape",
    ),
    pytest.param(
        V2,
        {"inputs": [bytes_input([[["a"]]], [1, 1, 1])]},
        "input 'input-0' has shape [1, 1, 1]; expected [-1] (-1 is any size)",
        id="v2-rank-3",
    ),
    pytest.param(
        V2,
        binary_bytes(b"good", b"\xff\xfe"),
        "input 'input-0': row 1 is not UTF-8 text",
        id="v2-binary-non-utf8",
    ),
    pytest.param(
        V2,
        {"inputs": [bytes_input([], [0])]},
        "input 'input-0' has no rows; an empty batch is refused: send at least one row",
        id="v2-empty",
    ),
    pytest.param(
        V1,
        {"instances": [[1.0], [2.0]]},
        "input 'input-0' takes strings (BYTES); row 0 is 1.0",
        id="v1-numbers",
    ),
    pytest.param(
        V1,
        {"instances": ["good", 3]},
        "input 'input-0' takes strings (BYTES); row 1 is 3",
        id="v1-mixed",
    ),
    pytest.param(
        V1,
        {"instances": ["good", None]},
        "input 'input-0' takes strings (BYTES); row 1 is None",
        id="v1-null",
    ),
    pytest.param(
        V1,
        {"instances": [["good", "film"]]},
        "'instances' must be a list of strings for input 'input-0' (BYTES, one text per instance)",
        id="v1-rows-of-two",
    ),
    pytest.param(
        V1,
        {"instances": [{"text": "good"}]},
        "'instances' must be a list of strings for input 'input-0' (BYTES, one text per instance)",
        id="v1-records",
    ),
    pytest.param(
        V1,
        {"dataframe_records": [{"text": "good"}]},
        "model 'text' takes text, not records keyed by column name: send "
        '{"instances": ["a text", ...]}',
        id="v1-dataframe-records",
    ),
]


@pytest.mark.parametrize(("path", "body", "message"), BAD_INPUTS)
def test_bad_input_is_a_400_naming_the_bytes_input(
    server: ServerProcess, model: Any, path: str, body: Any, message: str
) -> None:
    if isinstance(body, tuple):
        headers, content = body
    else:
        headers, content = {"content-type": "application/json"}, json.dumps(body).encode()
    reply = httpx.post(f"{server.url}{path}", content=content, headers=headers)
    assert reply.status_code == 400, reply.text
    assert reply.json() == {"error": message}
    good = httpx.post(f"{server.url}{V1}", json={"instances": REQUEST[:1]})
    assert good.json() == {"predictions": model.predict(REQUEST[:1]).tolist()}


def test_declared_input_is_honoured(start_server: Any, model_dir: Path, model: Any) -> None:
    """`--input-spec` names the input and may state [-1, 1]; requests follow what it says."""
    server = start_server(
        "--predictor",
        "sklearn",
        "--model-dir",
        str(model_dir),
        "--model-name",
        "text",
        "--input-spec",
        "[{name: review, datatype: BYTES, shape: [-1, 1]}]",
    )
    meta = httpx.get(f"{server.url}/v2/models/text").json()
    assert meta["inputs"] == [{"name": "review", "datatype": "BYTES", "shape": [-1, 1]}]
    for data, shape in (([[t] for t in REQUEST], [4, 1]), (REQUEST, [4])):
        reply = httpx.post(
            f"{server.url}{V2}", json={"inputs": [bytes_input(data, shape, name="review")]}
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["outputs"][0]["data"] == model.predict(REQUEST).tolist()
    refused = httpx.post(f"{server.url}{V2}", json={"inputs": [bytes_input(REQUEST)]})
    assert refused.status_code == 400
    assert refused.json() == {"error": "unknown input 'input-0'; model 'text' takes review"}
    v1 = httpx.post(f"{server.url}{V1}", json={"instances": REQUEST})
    assert v1.json() == {"predictions": model.predict(REQUEST).tolist()}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "[{name: input-0, datatype: FP64, shape: [-1, 3]}]",
            "declared input 'input-0' is FP64 [-1, 3], but the model's first step, "
            "TfidfVectorizer, "
            "takes one string per row: declare datatype BYTES, shape [-1]",
        ),
        (
            "[{name: input-0, datatype: BYTES, shape: [-1, 2]}]",
            "declared input 'input-0' is BYTES [-1, 2], but the model's first step, "
            "TfidfVectorizer, "
            "takes one string per row: declare datatype BYTES, shape [-1]",
        ),
    ],
    ids=["numbers", "two-texts-per-row"],
)
def test_a_declared_input_the_model_cannot_take_is_refused_at_start(
    tmp_path: Path, model_dir: Path, spec: str, message: str
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kninfer",
            "serve",
            "--host",
            "127.0.0.1",
            "--http-port",
            "0",
            "--predictor",
            "sklearn",
            "--model-dir",
            str(model_dir),
            "--input-spec",
            spec,
        ],
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert message in done.stdout + done.stderr, done.stdout + done.stderr


def test_kninfer_yaml_bytes_serves_an_array_model_of_strings(
    start_server: Any, tmp_path: Path
) -> None:
    """An encoder pipeline fitted on a numpy array of strings states no column names and no
    vectorizer: only a declaration says it takes strings, and kninfer.yaml is honoured."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder

    rows = np.array(
        [
            ["oslo", "pro"],
            ["rome", "basic"],
            ["lima", "pro"],
            ["oslo", "basic"],
            ["rome", "pro"],
            ["lima", "basic"],
        ],
        dtype=object,
    )
    encoder = make_pipeline(OrdinalEncoder(), LogisticRegression()).fit(rows, [1, 0, 1, 0, 1, 0])
    model_dir = tmp_path / "encoder"
    model_dir.mkdir()
    joblib.dump(encoder, model_dir / "model.joblib")
    (model_dir / "kninfer.yaml").write_text(
        "inputs:\n  - {name: place, datatype: BYTES, shape: [-1, 2]}\n"
    )
    server = start_server(
        "--predictor", "sklearn", "--model-dir", str(model_dir), "--model-name", "enc"
    )
    meta = httpx.get(f"{server.url}/v2/models/enc").json()
    assert meta["inputs"] == [{"name": "place", "datatype": "BYTES", "shape": [-1, 2]}]
    request = [["lima", "basic"], ["oslo", "pro"]]
    reply = httpx.post(
        f"{server.url}/v2/models/enc/infer",
        json={"inputs": [{"name": "place", "datatype": "BYTES", "shape": [2, 2], "data": request}]},
    )
    assert reply.status_code == 200, reply.text
    expected = encoder.predict(np.array(request, dtype=object)).tolist()
    assert reply.json()["outputs"][0]["data"] == expected
    v1 = httpx.post(f"{server.url}/v1/models/enc:predict", json={"instances": request})
    assert v1.json() == {"predictions": expected}
    short = httpx.post(f"{server.url}/v1/models/enc:predict", json={"instances": [["lima"]]})
    assert short.status_code == 400
    assert short.json() == {
        "error": "'instances' must be a list of rows of 2 strings for input 'place' (BYTES)"
    }


def load_in_process(tmp_path: Path, estimator: Any) -> Any:
    from kninfer.predictors.sklearn import SklearnPredictor
    from kninfer.settings import ServeSettings

    joblib.dump(estimator, tmp_path / "model.joblib")
    predictor = SklearnPredictor("m", tmp_path, ServeSettings(model_dir=tmp_path))
    predictor.load()
    return predictor


def test_other_vectorizers_nested_pipelines_and_file_inputs(tmp_path: Path) -> None:
    """HashingVectorizer (no vocabulary: the warm-up text is a guess) inside a nested Pipeline
    is a text model too; a vectorizer that would open files named by requests is refused."""
    from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import make_pipeline

    from kninfer.errors import ModelLoadError

    nested = make_pipeline(
        make_pipeline(HashingVectorizer(n_features=64)), SGDClassifier(random_state=0)
    ).fit(DOCS, LABELS)
    (tmp_path / "hashing").mkdir()
    predictor = load_in_process(tmp_path / "hashing", nested)
    assert predictor.get_input_types() == [{"name": "input-0", "datatype": "BYTES", "shape": [-1]}]
    assert predictor.warmup_guessed
    answer = predictor.run({"input-0": np.array(REQUEST, dtype=object)}, ["predict"])
    assert answer["predict"].tolist() == nested.predict(REQUEST).tolist()

    files = make_pipeline(CountVectorizer(input="filename"), SGDClassifier())
    paths = []
    for i, doc in enumerate(DOCS):
        paths.append(str(tmp_path / f"doc{i}.txt"))
        Path(paths[-1]).write_text(doc)
    files.fit(paths, LABELS)
    (tmp_path / "files").mkdir()
    with pytest.raises(
        ModelLoadError,
        match="the model's CountVectorizer has input='filename': "
        "kninfer serves text vectorizers that take the text itself",
    ):
        load_in_process(tmp_path / "files", files)
