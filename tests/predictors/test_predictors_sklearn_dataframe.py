"""scikit-learn models fitted on pandas DataFrames: the shape most production models have.

Models (built in a temp dir, saved with joblib as a user would):
- `churn`: Pipeline(ColumnTransformer(OneHotEncoder on two string columns, StandardScaler on three
  numeric ones), GradientBoostingClassifier) with string labels;
- `price`: Pipeline(ColumnTransformer(OneHotEncoder on a string column, passthrough numbers),
  Ridge), a regressor, with an `input_example.json` beside it as MLflow keeps one.

Served by real `kninfer serve` processes (nothing but `--model-dir`), answered over V2 REST (JSON
and binary, through tritonclient), gRPC (tritonclient), V1 (records and rows) and MLflow's scoring
protocol (MLflow's own ScoringServerClient), compared with the in-process model's predictions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest

from tests.support.servers import ServerProcess, servers_started, triton_infer

CITIES = ["oslo", "rome", "lima"]
PLANS = ["basic", "pro"]
CHURN_COLUMNS = ["city", "plan", "age", "income", "visits"]


def churn_frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "city": rng.choice(CITIES, rows),
            "plan": rng.choice(PLANS, rows),
            "age": rng.integers(18, 80, rows).astype(float),
            "income": rng.normal(50, 10, rows),
            "visits": rng.integers(0, 30, rows),
        }
    )


def build_models(root: Path) -> dict[str, Path]:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = churn_frame(300, 0)
    labels = np.where(
        (frame.age > 45) & (frame.plan == "pro"),
        "churn",
        np.where(frame.city == "lima", "at-risk", "stay"),
    )
    churn = Pipeline(
        [
            (
                "pre",
                ColumnTransformer(
                    [
                        ("cat", OneHotEncoder(handle_unknown="error"), ["city", "plan"]),
                        ("num", StandardScaler(), ["age", "income", "visits"]),
                    ]
                ),
            ),
            ("clf", GradientBoostingClassifier(n_estimators=30, random_state=0)),
        ]
    ).fit(frame, labels)
    (root / "churn").mkdir()
    joblib.dump(churn, root / "churn" / "model.joblib")

    houses = pd.DataFrame(
        {
            "district": np.random.default_rng(1).choice(["north", "south"], 200),
            "rooms": np.random.default_rng(2).integers(1, 6, 200).astype(float),
            "area": np.random.default_rng(3).uniform(20, 200, 200),
        }
    )
    price = Pipeline(
        [
            (
                "pre",
                ColumnTransformer(
                    [("cat", OneHotEncoder(handle_unknown="ignore"), ["district"])],
                    remainder="passthrough",
                ),
            ),
            ("reg", Ridge()),
        ]
    ).fit(houses, houses.area * 3000 + houses.rooms * 10000)
    (root / "price").mkdir()
    joblib.dump(price, root / "price" / "model.joblib")
    # MLflow's input_example.json: pandas "split" orient.
    (root / "price" / "input_example.json").write_text(
        json.dumps({"columns": ["district", "rooms", "area"], "data": [["south", 3.0, 75.5]]})
    )
    return {"churn": root / "churn", "price": root / "price"}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_models(tmp_path_factory.mktemp("dataframe-models"))


@pytest.fixture(scope="module")
def servers(
    model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServerProcess]]:
    tmp = tmp_path_factory.mktemp("dataframe-servers")
    commands = {
        name: ["--predictor", "sklearn", "--model-dir", str(path), "--model-name", name]
        for name, path in model_dirs.items()
    }
    with servers_started(commands, tmp) as started:
        yield started
    for server in started.values():
        assert server.process is not None and server.process.returncode == 0, server.log()


@pytest.fixture(scope="module")
def loaded(model_dirs: dict[str, Path]) -> dict[str, Any]:
    return {name: joblib.load(path / "model.joblib") for name, path in model_dirs.items()}


REQUEST = churn_frame(6, 7)


def v2_columns(frame: pd.DataFrame, outputs: tuple[str, ...] = ("predict",)) -> dict[str, Any]:
    inputs = []
    for column in frame.columns:
        values = frame[column].tolist()
        datatype = "BYTES" if isinstance(values[0], str) else "FP64"
        inputs.append(
            {"name": column, "shape": [len(values)], "datatype": datatype, "data": values}
        )
    return {"inputs": inputs, "outputs": [{"name": o} for o in outputs]}


def test_metadata_states_one_input_per_column_and_where_its_type_came_from(
    servers: dict[str, ServerProcess],
) -> None:
    doc = httpx.get(f"{servers['churn'].url}/v2/models/churn").json()
    assert doc["inputs"] == [
        {"name": "city", "datatype": "BYTES", "shape": [-1]},
        {"name": "plan", "datatype": "BYTES", "shape": [-1]},
        {"name": "age", "datatype": "FP64", "shape": [-1]},
        {"name": "income", "datatype": "FP64", "shape": [-1]},
        {"name": "visits", "datatype": "FP64", "shape": [-1]},
    ]
    assert doc["outputs"] == [
        {"name": "predict", "datatype": "BYTES", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ]
    assert doc["parameters"]["datatype_sources"] == {
        "city": "fitted",
        "plan": "fitted",
        "age": "default",
        "income": "default",
        "visits": "default",
    }
    price = httpx.get(f"{servers['price'].url}/v2/models/price").json()
    assert [i["datatype"] for i in price["inputs"]] == ["BYTES", "FP64", "FP64"]
    assert set(price["parameters"]["datatype_sources"].values()) == {"input_example"}
    # The warm-up ran on a valid row: no warning in the log.
    assert "warm-up" not in servers["churn"].log()


def test_v2_json_columns_match_the_model(
    servers: dict[str, ServerProcess], loaded: dict[str, Any]
) -> None:
    body = v2_columns(REQUEST, ("predict", "predict_proba"))
    body["inputs"][1]["shape"] = [len(REQUEST), 1]  # a column may also come as [N, 1]
    reply = httpx.post(f"{servers['churn'].url}/v2/models/churn/infer", json=body)
    assert reply.status_code == 200, reply.text
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    assert outputs["predict"]["datatype"] == "BYTES"
    assert outputs["predict"]["data"] == loaded["churn"].predict(REQUEST).tolist()
    np.testing.assert_allclose(
        np.asarray(outputs["predict_proba"]["data"]).reshape(-1, 3),
        loaded["churn"].predict_proba(REQUEST),
        rtol=1e-12,
    )


def test_tritonclient_http_binary_and_grpc_match_the_model(
    servers: dict[str, ServerProcess], loaded: dict[str, Any]
) -> None:
    expected = loaded["churn"].predict(REQUEST).tolist()
    server = servers["churn"]
    inputs = [
        {
            "name": c,
            "datatype": "BYTES" if REQUEST[c].dtype == object else "FP64",
            "shape": [len(REQUEST)],
            "data": REQUEST[c].tolist(),
        }
        for c in CHURN_COLUMNS
    ]
    for protocol, url in (("http", f"127.0.0.1:{server.http_port}"), ("grpc", server.grpc_target)):
        answer = triton_infer(
            {
                "protocol": protocol,
                "url": url,
                "model": "churn",
                "inputs": inputs,
                "outputs": ["predict"],
            }
        )
        assert answer == {"outputs": {"predict": expected}}, protocol


def test_v1_records_and_rows_match_the_model(
    servers: dict[str, ServerProcess], loaded: dict[str, Any]
) -> None:
    expected = loaded["churn"].predict(REQUEST).tolist()
    url = f"{servers['churn'].url}/v1/models/churn:predict"
    records = REQUEST.to_dict("records")
    assert httpx.post(url, json={"instances": records}).json() == {"predictions": expected}
    rows = REQUEST.to_numpy(dtype=object).tolist()
    assert httpx.post(url, json={"instances": rows}).json() == {"predictions": expected}
    split = json.loads(REQUEST.to_json(orient="split", index=False))
    assert httpx.post(url, json={"dataframe_split": split}).json() == {"predictions": expected}


def test_mlflow_scoring_client_and_csv(
    servers: dict[str, ServerProcess], loaded: dict[str, Any]
) -> None:
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    server = servers["churn"]
    client = ScoringServerClient("127.0.0.1", server.http_port)
    client.wait_server_ready(timeout=30)
    expected = loaded["churn"].predict(REQUEST).tolist()
    assert client.invoke(REQUEST)["predictions"] == expected
    csv = httpx.post(
        f"{server.url}/invocations",
        content=REQUEST.to_csv(index=False),
        headers={"content-type": "text/csv"},
    )
    assert csv.json() == {"predictions": expected}
    with pytest.raises(Exception, match="error code 400"):
        client.invoke(REQUEST, params={"threshold": 0.5})


def test_regressor_v2_and_v1_match_the_model(
    servers: dict[str, ServerProcess], loaded: dict[str, Any]
) -> None:
    frame = pd.DataFrame(
        {
            "district": ["north", "south", "east"],
            "rooms": [2.0, 4.0, 3.0],
            "area": [50.0, 120.5, 80.0],
        }
    )
    expected = loaded["price"].predict(frame)
    server = servers["price"]
    reply = httpx.post(f"{server.url}/v2/models/price/infer", json=v2_columns(frame))
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(reply.json()["outputs"][0]["data"], expected, rtol=1e-12)
    v1 = httpx.post(
        f"{server.url}/v1/models/price:predict", json={"instances": frame.to_dict("records")}
    ).json()
    np.testing.assert_allclose(v1["predictions"], expected, rtol=1e-12)


def column(
    name: str, data: list[Any], datatype: str | None = None, shape: list[int] | None = None
) -> dict[str, Any]:
    if datatype is None:
        datatype = "BYTES" if name in ("city", "plan") else "FP64"
    return {"name": name, "datatype": datatype, "shape": shape or [len(data)], "data": data}


GOOD_COLUMNS = {"city": ["oslo"], "plan": ["pro"], "age": [50.0], "income": [50.0], "visits": [3.0]}


def columns(**changes: Any) -> dict[str, Any]:
    """A one-row V2 request with `changes` (name -> data, or None to drop the column)."""
    inputs = []
    for name, data in {**GOOD_COLUMNS, **changes}.items():
        if data is None:
            continue
        inputs.append(data if isinstance(data, dict) else column(name, data))
    return {"inputs": inputs}


V2 = "/v2/models/churn/infer"
V1 = "/v1/models/churn:predict"
RECORD = {"city": "oslo", "plan": "pro", "age": 50, "income": 50.0, "visits": 3}

BAD_INPUTS = [
    pytest.param(
        V2,
        columns(colour=column("colour", ["red"], "BYTES")),
        400,
        "unknown input 'colour'; model 'churn' takes the columns city, plan, age, income, visits",
        id="v2-unknown-column",
    ),
    pytest.param(
        V2,
        columns(plan=None),
        400,
        "missing input(s) plan for model 'churn'",
        id="v2-missing-column",
    ),
    pytest.param(
        V2,
        columns(city=column("city", [1.0], "FP64")),
        400,
        "input 'city' has datatype FP64; expected one of BYTES",
        id="v2-number-in-string",
    ),
    pytest.param(
        V2,
        columns(age=column("age", ["fifty"], "BYTES")),
        400,
        "input 'age' has datatype BYTES; expected one of FP64",
        id="v2-string-in-number",
    ),
    pytest.param(
        V2,
        columns(age=[True]),
        400,
        "input 'age': 'data' must be numbers for datatype FP64; found true/false",
        id="v2-bool-in-number",
    ),
    pytest.param(
        V2,
        columns(city=["paris"]),
        400,
        "model rejected the input: Found unknown categories ['paris']",
        id="v2-unknown-category",
    ),
    pytest.param(
        V2,
        columns(age=[50.0, 60.0]),
        400,
        "columns must have the same number of rows",
        id="v2-lengths-differ",
    ),
    pytest.param(
        V2,
        columns(age=column("age", [50.0, 1.0], shape=[1, 2])),
        400,
        "input 'age' is a column: shape must be [-1] or [-1, 1]; got [1, 2]",
        id="v2-column-not-1d",
    ),
    pytest.param(
        V2,
        {"inputs": [column(n, []) for n in CHURN_COLUMNS]},
        400,
        "input 'city' has no rows; an empty batch is refused: send at least one row",
        id="v2-empty-batch",
    ),
    pytest.param(
        V2,
        {"inputs": [column("input-0", [1.0] * 5, shape=[1, 5])]},
        400,
        "unknown input 'input-0'",
        id="v2-matrix-for-string-model",
    ),
    pytest.param(
        V1,
        {"instances": [{**RECORD, "age": "fifty"}]},
        400,
        "column 'age' takes numbers (FP64); row 0 is 'fifty'",
        id="v1-string-in-number",
    ),
    pytest.param(
        V1,
        {"instances": [{**RECORD, "city": 7}]},
        400,
        "column 'city' takes strings (BYTES); row 0 is 7",
        id="v1-number-in-string",
    ),
    pytest.param(
        V1,
        {"instances": [{**RECORD, "visits": False}]},
        400,
        "column 'visits' takes numbers (FP64); got true/false",
        id="v1-bool-in-number",
    ),
    pytest.param(
        V1,
        {"instances": [{k: v for k, v in RECORD.items() if k != "plan"}]},
        400,
        "column 'plan' is missing in record 0",
        id="v1-missing-column",
    ),
    pytest.param(
        V1,
        {"instances": [{**RECORD, "colour": "red"}]},
        400,
        "unknown column(s) colour; model 'churn' takes city, plan, age, income, visits",
        id="v1-unknown-column",
    ),
    pytest.param(
        V1,
        {"instances": [["oslo", "pro", 50]]},
        400,
        "row 0 must be a list of 5 values (columns city, plan, age, income, visits)",
        id="v1-short-row",
    ),
    pytest.param(
        V1, {"instances": []}, 400, "'instances' is empty; an empty batch is refused", id="v1-empty"
    ),
    pytest.param(
        V1,
        {"instances": [{**RECORD, "income": 1e309}]},
        400,
        "request body is not valid JSON",
        id="v1-overflow-literal",
    ),
    pytest.param(
        "/invocations",
        {"dataframe_records": [{**RECORD, "city": "paris"}]},
        400,
        "model rejected the input: Found unknown categories ['paris']",
        id="invocations-unknown-category",
    ),
    pytest.param(
        "/invocations",
        {"dataframe_split": {"columns": ["city"], "data": [["oslo"]]}},
        400,
        "missing column(s) plan, age, income, visits",
        id="invocations-missing",
    ),
    pytest.param(
        "/invocations",
        {"instances": [RECORD], "inputs": [RECORD]},
        400,
        "exactly one of the input fields",
        id="invocations-two-formats",
    ),
]


@pytest.mark.parametrize(("path", "body", "status", "message"), BAD_INPUTS)
def test_bad_input_is_a_client_error_and_the_server_keeps_serving(
    servers: dict[str, ServerProcess],
    loaded: dict[str, Any],
    path: str,
    body: dict[str, Any],
    status: int,
    message: str,
) -> None:
    server = servers["churn"]
    content = (
        body if isinstance(body, bytes) else json.dumps(body).replace("Infinity", "1e309").encode()
    )
    reply = httpx.post(
        f"{server.url}{path}", content=content, headers={"content-type": "application/json"}
    )
    assert reply.status_code == status, reply.text
    doc = reply.json()
    error = doc["message"] if path == "/invocations" else doc["error"]
    assert message in error, error
    if path == "/invocations":
        assert doc["error_code"] == "BAD_REQUEST"
    good = httpx.post(f"{server.url}{V1}", json={"instances": [RECORD]})
    assert good.json() == {"predictions": loaded["churn"].predict(pd.DataFrame([RECORD])).tolist()}


def test_infinity_in_a_numeric_column_is_refused_naming_it(
    servers: dict[str, ServerProcess],
) -> None:
    import struct

    # JSON cannot carry infinity; the binary tensor extension can.
    doc = columns(
        age={"name": "age", "datatype": "FP64", "shape": [1], "parameters": {"binary_data_size": 8}}
    )
    inputs = doc["inputs"]
    inputs.append(inputs.pop(inputs.index(doc["inputs"][2])))  # the binary tensor last
    header = json.dumps({"inputs": inputs}).encode()
    reply = httpx.post(
        f"{servers['churn'].url}{V2}",
        content=header + struct.pack("<d", np.inf),
        headers={"inference-header-content-length": str(len(header))},
    )
    assert reply.status_code == 400, reply.text
    assert reply.json() == {"error": "input 'age' contains infinity; Pipeline needs finite numbers"}


def test_declared_datatypes_win_and_a_guessed_warmup_that_fails_is_not_fatal(
    tmp_path: Path, start_server: Any
) -> None:
    """A column only a FunctionTransformer reads gets the FP64 default: the warm-up row guesses
    and fails, and the model serves anyway; declaring the column BYTES in kninfer.yaml fixes
    the metadata and the warm-up."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    frame = pd.DataFrame({"word": ["a", "bb", "ccc", "dddd"], "x": [1.0, 2.0, 3.0, 4.0]})
    lengths = FunctionTransformer(np.vectorize(len), feature_names_out="one-to-one")
    model = Pipeline(
        [
            ("pre", ColumnTransformer([("len", lengths, ["word"])], remainder="passthrough")),
            ("reg", LinearRegression()),
        ]
    ).fit(frame, [2.0, 4.0, 6.0, 8.0])
    model_dir = tmp_path / "words"
    model_dir.mkdir()
    joblib.dump(model, model_dir / "model.joblib")
    guessed = start_server(
        "--predictor", "sklearn", "--model-dir", str(model_dir), "--model-name", "words"
    )
    assert "warm-up prediction on a guessed row failed" in guessed.log()
    assert httpx.get(f"{guessed.url}/v2/models/words").json()["inputs"][0]["datatype"] == "FP64"
    guessed.stop()

    (model_dir / "kninfer.yaml").write_text(
        "inputs:\n  - {name: word, datatype: BYTES, shape: [-1]}\n"
    )
    declared = start_server(
        "--predictor", "sklearn", "--model-dir", str(model_dir), "--model-name", "words"
    )
    doc = httpx.get(f"{declared.url}/v2/models/words").json()
    assert doc["inputs"][0] == {"name": "word", "datatype": "BYTES", "shape": [-1]}
    assert doc["parameters"]["datatype_sources"] == {"word": "declared", "x": "default"}
    reply = httpx.post(
        f"{declared.url}/v1/models/words:predict", json={"instances": [{"word": "eeeee", "x": 5.0}]}
    )
    np.testing.assert_allclose(
        reply.json()["predictions"], model.predict(pd.DataFrame({"word": ["eeeee"], "x": [5.0]}))
    )
