"""Drift in the server (kninfer.observability.drift, docs/monitoring.md), on real models built
here: `kninfer profile` and `build_profile` write the same reference profile of a DataFrame
pipeline's training data (a numeric and a string column); a real `kninfer serve` with that
profile counts every request into its bins (exact totals, out-of-range, unknown categories,
missing values) and exports a windowed PSI that stays low for the training distribution and
rises on the features that were shifted, only those; a model without a profile exports no
drift metric; a request the hook cannot count is answered all the same; the counters add up
across `--workers 2`. The counting itself is checked against an independent binning and PSI
against Evidently's formula, in process."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from kninfer.observability.drift import (
    PROFILE_FILE,
    DriftMonitor,
    Profile,
    Window,
    build_profile,
    load_monitor,
    read_profile,
)
from kninfer.observability.drift.monitor import FLUSH_SECONDS
from kninfer.observability.drift.profile import OTHER, Feature
from tests.support.paths import ROOT
from tests.support.servers import ServerProcess, server_env

COLORS = ("red", "green", "blue")
TRAIN_SHARES = (0.5, 0.3, 0.2)
# The shift of case (b): x1 moved by +2 standard deviations of its training values, and the
# string column re-weighted from red/green/blue 50/30/20 % to 10/30/60 %. x2 is left alone.
SHIFTED_SHARES = (0.1, 0.3, 0.6)
MODEL = "drift"
TRAIN_ROWS = 5000

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# ---- the model, its data, the server ----------------------------------------------------------


def sample(
    rows: int, seed: int, shift: float = 0.0, shares: tuple[float, ...] = TRAIN_SHARES
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x1": rng.normal(0.0, 1.0, rows) + shift,
            "x2": rng.normal(5.0, 2.0, rows),
            "color": rng.choice(COLORS, rows, p=list(shares)),
        }
    )


def fit_pipeline(frame: pd.DataFrame) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    target = ((frame["x1"] + (frame["color"] == "red")) > 0.5).astype(int)
    return make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["x1", "x2"]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["color"]),
            ]
        ),
        LogisticRegression(),
    ).fit(frame, target)


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kninfer", "profile", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The pipeline's directory with the profile `kninfer profile` wrote from train.csv (the
    training columns plus the target), the training frame and the fitted pipeline."""
    import joblib

    root = tmp_path_factory.mktemp("drift-model")
    train = sample(TRAIN_ROWS, seed=1)
    pipeline = fit_pipeline(train)
    model_dir = root / "model"
    model_dir.mkdir()
    joblib.dump(pipeline, model_dir / "model.joblib")
    train.assign(target=pipeline.predict(train)).to_csv(root / "train.csv", index=False)
    done = run_cli(str(model_dir), "--data", str(root / "train.csv"))
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    return {
        "dir": model_dir,
        "train": train,
        "pipeline": pipeline,
        "cli": done,
        "profile": json.loads((model_dir / PROFILE_FILE).read_text()),
    }


@pytest.fixture(scope="module")
def server(
    trained: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("drift-server")
    process = ServerProcess(
        ["--predictor", "sklearn", "--model-dir", str(trained["dir"]), "--model-name", MODEL],
        server_env(tmp),
        tmp / "server.log",
    )
    process.start(timeout=120)
    yield process
    process.stop()


def v2_body(frame: pd.DataFrame) -> dict[str, Any]:
    rows = len(frame)
    return {
        "inputs": [
            {"name": "x1", "shape": [rows], "datatype": "FP64", "data": frame["x1"].tolist()},
            {"name": "x2", "shape": [rows], "datatype": "FP64", "data": frame["x2"].tolist()},
            {
                "name": "color",
                "shape": [rows],
                "datatype": "BYTES",
                "data": frame["color"].tolist(),
            },
        ]
    }


def send(server: ServerProcess, frame: pd.DataFrame, batch: int = 100) -> list[Any]:
    """V2 JSON requests of `batch` rows; the predicted labels, in order."""
    labels: list[Any] = []
    for start in range(0, len(frame), batch):
        reply = httpx.post(
            f"{server.url}/v2/models/{MODEL}/infer",
            json=v2_body(frame.iloc[start : start + batch]),
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        labels.extend(reply.json()["outputs"][0]["data"])
    return labels


def scrape(url: str) -> Samples:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def drift_values(samples: Samples, name: str, feature: str) -> dict[str, float]:
    """A drift metric's samples for one feature of MODEL, by bin (or "" without a bin)."""
    found = {}
    for (sample_name, labels), value in samples.items():
        tags = dict(labels)
        if sample_name == name and tags.get("model") == MODEL and tags["feature"] == feature:
            found[tags.get("bin", "")] = value
    return found


def psi(samples: Samples) -> dict[str, float]:
    return {
        dict(labels)["feature"]: value
        for (name, labels), value in samples.items()
        if name == "kninfer_drift_psi" and dict(labels).get("model") == MODEL
    }


def expected_bins(feature: dict[str, Any], values: list[Any]) -> dict[str, int]:
    """The count per bin, binned here independently of kninfer: a number's bin is how many
    edges lie below it (bins are right-closed), a category's is its own or __other__."""
    counts = dict.fromkeys(
        feature["bins"]
        if feature["kind"] == "categorical"
        else [str(i) for i in range(len(feature["bins"]))],
        0,
    )
    if feature["kind"] == "numeric":
        edges = np.asarray(feature["edges"])
        x = np.asarray(values, dtype=float)
        for index in (x[~np.isnan(x), None] > edges[None, :]).sum(axis=1):
            counts[str(index)] += 1
    else:
        for value in map(str, values):
            counts[value if value in feature["bins"][:-1] else OTHER] += 1
    return counts


def feature_doc(profile: dict[str, Any], name: str) -> dict[str, Any]:
    (doc,) = [f for f in (*profile["features"], *profile["outputs"]) if f["name"] == name]
    return doc


# ---- building the profile ---------------------------------------------------------------------


def test_cli_and_python_function_build_the_same_profile(trained: dict[str, Any]) -> None:
    """`kninfer profile` (a subprocess, the model loaded by the sklearn family from its
    directory, the data read from CSV with the target column left out) and
    `build_profile(frame, model=pipeline)` in Python agree on every feature, bin and count."""
    cli = trained["profile"]
    assert "left out (not model inputs): target" in trained["cli"].stdout
    python = build_profile(trained["train"], model=trained["pipeline"]).to_json()
    for key in ("features", "outputs", "matrix", "window", "rows"):
        assert cli[key] == python[key], key
    names = [f["name"] for f in cli["features"]]
    assert names == ["x1", "x2", "color"]  # the V2 inputs the model is served with
    x1, color = feature_doc(cli, "x1"), feature_doc(cli, "color")
    # Deciles of 5000 distinct values: 10 bins of 500 each.
    assert x1["kind"] == "numeric" and x1["counts"] == [500] * 10 and len(x1["edges"]) == 9
    assert x1["min"] == trained["train"]["x1"].min() and x1["missing"] == 0
    assert color["kind"] == "categorical" and color["bins"] == ["red", "green", "blue", OTHER]
    assert color["counts"][-1] == 0 and color["unknown_counted"] is True
    output = feature_doc(cli, "output:predict")
    assert output["kind"] == "categorical" and set(output["bins"]) == {"0", "1", OTHER}
    assert cli["matrix"] is None  # a string column: no input-0 matrix form
    assert cli["window"] == {"rows": 1000, "min_rows": 1000, "blocks": 10}
    assert read_profile(trained["dir"] / PROFILE_FILE).to_json()["features"] == cli["features"]


def test_a_matrix_model_is_profiled_by_its_served_columns(tmp_path: Path) -> None:
    """A model fitted on an array: features input-0[0], input-0[1], ... (kninfer serves it one
    [N, k] `input-0`); a few distinct values give fewer bins (deduplicated quantile edges)."""
    import joblib
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(3)
    matrix = np.column_stack([rng.normal(size=400), rng.integers(0, 3, 400)])
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    joblib.dump(LinearRegression().fit(matrix, matrix @ [1.0, 2.0]), model_dir / "model.joblib")
    pd.DataFrame(matrix, columns=["a", "b"]).assign(y=0.0).to_csv(tmp_path / "d.csv", index=False)
    done = run_cli(
        str(model_dir),
        "--data",
        str(tmp_path / "d.csv"),
        "--drop",
        "y",
        "--window",
        "200",
        "--min-rows",
        "100",
    )
    assert done.returncode == 0, done.stderr
    profile = read_profile(model_dir / PROFILE_FILE)
    assert [(f.name, f.tensor, f.column) for f in profile.features] == [
        ("input-0[0]", "input-0", 0),
        ("input-0[1]", "input-0", 1),
    ]
    assert profile.features[0].bins == 10 and profile.features[1].edges == (0.0, 1.0, 2.0)
    (output,) = profile.outputs
    assert output.name == "output:predict" and output.kind == "numeric"  # a regressor
    assert (profile.window.rows, profile.window.threshold) == (200, 100)
    done = run_cli(str(model_dir), "--data", str(tmp_path / "d.csv"))  # y left in
    assert done.returncode == 2 and "--drop the others" in done.stderr


def test_mlflow_model_without_data_profiles_its_input_example_with_a_warning(
    tmp_path: Path,
) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    train = sample(200, seed=2)
    pipeline = fit_pipeline(train)
    path = tmp_path / "mlflow-model"
    mlflow.sklearn.save_model(
        pipeline,
        path,
        pip_requirements=["scikit-learn", "pandas"],
        serialization_format="cloudpickle",
        signature=infer_signature(train, pipeline.predict(train)),
        input_example=train.head(5),
    )
    done = run_cli(str(path))
    assert done.returncode == 0, done.stderr
    assert "no --data" in done.stderr and "weak reference" in done.stderr
    profile = read_profile(path / PROFILE_FILE)
    assert profile.rows == 5 and "input example" in profile.source
    assert [f.name for f in profile.features] == ["x1", "x2", "color"]


def test_cli_refuses_what_it_cannot_profile(tmp_path: Path, trained: dict[str, Any]) -> None:
    done = run_cli(str(trained["dir"]))  # scikit-learn: no input example to fall back on
    assert done.returncode == 2 and "--data FILE is needed" in done.stderr
    done = run_cli(str(trained["dir"]), "--data", str(tmp_path / "none.csv"))
    assert done.returncode == 2 and "no such file" in done.stderr
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        (tmp_path / "d.parquet").write_bytes(b"PAR1")
        done = run_cli(str(trained["dir"]), "--data", str(tmp_path / "d.parquet"))
        assert done.returncode == 2 and "pyarrow" in done.stderr
    missing = tmp_path / "missing.csv"
    trained["train"].drop(columns=["color"]).to_csv(missing, index=False)
    done = run_cli(str(trained["dir"]), "--data", str(missing), "--out", str(tmp_path / "p.json"))
    assert done.returncode == 2 and "color" in done.stderr
    assert not (tmp_path / "p.json").exists()


# ---- in the server ----------------------------------------------------------------------------


def test_psi_low_on_the_training_distribution_high_on_the_shifted_features_only(
    server: ServerProcess, trained: dict[str, Any]
) -> None:
    """(a) 1,100 fresh rows of the training distribution, then (b) 1,100 rows with x1 shifted
    by +2 standard deviations and the colours re-weighted from 50/30/20 % to 10/30/60 %
    (x2 unchanged). 1,100 = the 1,000-row window plus one 100-row block, so whatever came
    before, the window holds only the rows of the case."""
    send(server, sample(1100, seed=11))
    before = psi(scrape(server.url))
    print(f"\nPSI, training distribution: {before}")
    assert {"x1", "x2", "color", "output:predict"} <= set(before)
    assert all(value < 0.1 for value in before.values()), before

    shift = 2 * trained["train"]["x1"].std()
    send(server, sample(1100, seed=12, shift=shift, shares=SHIFTED_SHARES))
    after = psi(scrape(server.url))
    print(f"PSI, x1 + {shift:.3f} (2 sd) and colours 10/30/60 %: {after}")
    assert after["x1"] > 0.25 and after["color"] > 0.25
    assert after["x2"] < 0.1  # the feature left alone stays low
    # The model's output moved too (its labels depend on x1 and the colour): shown, not a
    # feature.
    print(f"PSI of the output (labels): {after['output:predict']:.3f}")


def test_counters_count_exactly_what_was_sent(
    server: ServerProcess, trained: dict[str, Any]
) -> None:
    """Every bin's counter rises by exactly the values sent into it (binned here by hand),
    over V2 and V1; values outside the training range, unknown colours and missing values
    have their own counters."""
    profile = trained["profile"]
    frame = sample(300, seed=21)
    frame.loc[:4, "x1"] = -50.0  # 5 below the training minimum
    frame.loc[5:8, "x2"] = 80.0  # 4 above the training maximum
    frame.loc[9:14, "color"] = "purple"  # 6 colours training never saw
    v1_rows = [
        {"x1": 0.25, "x2": None, "color": "red"},  # 3 missing x2, over V1
        {"x1": 1.5, "x2": None, "color": "blue"},
        {"x1": -0.5, "x2": None, "color": "green"},
    ]
    before = scrape(server.url)
    labels = send(server, frame, batch=50)
    reply = httpx.post(
        f"{server.url}/v1/models/{MODEL}:predict", json={"instances": v1_rows}, timeout=60
    )
    assert reply.status_code == 200, reply.text
    labels += reply.json()["predictions"]
    after = scrape(server.url)

    sent = {
        "x1": [*frame["x1"], *(r["x1"] for r in v1_rows)],
        "x2": [*frame["x2"], *(np.nan for _ in v1_rows)],
        "color": [*frame["color"], *(r["color"] for r in v1_rows)],
        "output:predict": labels,
    }
    figures = {}
    for name, values in sent.items():
        doc = feature_doc(profile, name)
        grown = {
            b: after_value - drift_values(before, "kninfer_drift_bin_total", name).get(b, 0)
            for b, after_value in drift_values(after, "kninfer_drift_bin_total", name).items()
        }
        assert grown == expected_bins(doc, values), name
        figures[name] = grown

    def rise(metric: str, feature: str) -> float:
        return drift_values(after, metric, feature)[""] - drift_values(before, metric, feature)[""]

    def outside(name: str) -> int:
        x = np.asarray(sent[name], dtype=float)
        doc = feature_doc(profile, name)
        return int(np.sum(x < doc["min"]) + np.sum(x > doc["max"]))

    assert outside("x1") >= 5 and outside("x2") >= 4  # the planted ones, and any natural ones
    assert rise("kninfer_drift_out_of_range_total", "x1") == outside("x1")
    assert rise("kninfer_drift_out_of_range_total", "x2") == outside("x2")
    assert rise("kninfer_drift_unknown_category_total", "color") == 6
    assert figures["color"][OTHER] == 6  # unknown colours are binned as __other__
    assert rise("kninfer_drift_missing_total", "x2") == 3
    assert rise("kninfer_drift_missing_total", "x1") == 0
    assert sum(figures["x2"].values()) == 300  # missing values are in no bin
    print(f"\nbin counts seen: {figures}; out of range x1 {outside('x1')}, x2 {outside('x2')}")
    reference = drift_values(after, "kninfer_drift_reference_ratio", "color")
    assert reference == pytest.approx(
        dict(
            zip(
                feature_doc(profile, "color")["bins"],
                feature_doc(profile, "color")["proportions"],
                strict=True,
            )
        ),
        abs=1e-6,
    )


def test_a_model_without_a_profile_exports_no_drift_metric(
    start_server: Any, trained: dict[str, Any], tmp_path: Path
) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(trained["dir"] / "model.joblib", bare / "model.joblib")
    server = start_server("--predictor", "sklearn", "--model-dir", str(bare), "--model-name", MODEL)
    send(server, sample(20, seed=31))
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    assert "kninfer_requests_total" in text and "kninfer_drift" not in text
    assert "drift monitoring" not in server.log()


def text_model_with_an_unusable_profile(model_dir: Path) -> None:
    """A text model (one BYTES `input-0` of shape [-1]) whose profile takes `input-0` for a
    numeric matrix: its values cannot be counted into those bins."""
    import joblib
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts = ["good film", "great story", "bad film", "awful plot"] * 5
    model_dir.mkdir()
    joblib.dump(
        make_pipeline(CountVectorizer(), LogisticRegression()).fit(texts, [1, 1, 0, 0] * 5),
        model_dir / "model.joblib",
    )
    build_profile(np.array([[0.0], [1.0], [2.0], [3.0]])).write(model_dir)


def test_a_request_the_hook_cannot_count_is_answered(start_server: Any, tmp_path: Path) -> None:
    text_model_with_an_unusable_profile(tmp_path / "text")
    server = start_server(
        "--predictor", "sklearn", "--model-dir", str(tmp_path / "text"), "--model-name", MODEL
    )
    body = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [2],
                "datatype": "BYTES",
                "data": ["good story", "awful film"],
            }
        ]
    }

    def answered() -> None:
        for _ in range(3):
            reply = httpx.post(f"{server.url}/v2/models/{MODEL}/infer", json=body, timeout=60)
            assert reply.status_code == 200, reply.text
            assert reply.json()["outputs"][0]["data"] == [1, 0]

    answered()
    # Counting is deferred (DriftMonitor.observe): a scrape counts what is pending, and fails.
    counted = drift_values(scrape(server.url), "kninfer_drift_bin_total", "input-0[0]")
    assert counted and set(counted.values()) == {0.0}
    answered()
    scrape(server.url)
    assert server.log().count("drift monitoring stopped") == 1  # logged once, then off


def test_counters_add_up_across_workers(start_server: Any, trained: dict[str, Any]) -> None:
    multi = start_server(
        "--predictor",
        "sklearn",
        "--model-dir",
        str(trained["dir"]),
        "--model-name",
        MODEL,
        "--workers",
        "2",
        timeout=180,
    )
    frame = sample(210, seed=41)
    send(multi, frame, batch=7)  # 30 requests, a new connection each: spread over workers
    names = ("x1", "x2", "color", "output:predict")
    # A scrape counts the scraped worker's pending requests; the other worker counts its own
    # within FLUSH_SECONDS of its first pending one (DriftMonitor.observe).
    deadline = time.monotonic() + 10 * FLUSH_SECONDS + 5
    while True:
        samples = scrape(multi.url)
        totals = [
            sum(drift_values(samples, "kninfer_drift_bin_total", name).values()) for name in names
        ]
        if totals == [210] * len(names) or time.monotonic() > deadline:
            break
        time.sleep(FLUSH_SECONDS)
    assert totals == [210] * len(names)
    assert multi.log().count("drift monitoring on") == 2  # one monitor per worker


# ---- the counting, in process -------------------------------------------------------------


def sample_value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_binning_matches_an_independent_binning() -> None:
    """`Feature.tally` (one searchsorted over the edges framed by min and max) and
    `Feature.assign` (per value) against counting by hand, on values at the edges, at the
    minimum and maximum, just outside them, and missing."""
    rng = np.random.default_rng(5)
    feature = build_profile(pd.DataFrame({"v": rng.normal(size=1000)})).features[0]
    doc = feature.to_json()
    for _ in range(50):
        x = rng.normal(0, 3, 64)
        x[rng.random(64) < 0.1] = np.nan
        x[:6] = [
            feature.minimum,
            feature.maximum,
            feature.edges[0],
            feature.edges[-1],
            np.nextafter(feature.minimum, -np.inf),
            np.nextafter(feature.maximum, np.inf),
        ]
        index, outside = feature.assign(x)
        tally, tally_outside = feature.tally(x)
        assert (np.bincount(index, minlength=feature.bins + 1) == tally).all()
        by_hand = expected_bins(doc, list(x))
        assert list(tally[:-1]) == [by_hand[str(i)] for i in range(feature.bins)]
        assert tally[-1] == np.isnan(x).sum()
        assert outside == tally_outside == np.sum(x < feature.minimum) + np.sum(x > feature.maximum)


def test_psi_is_evidentlys_formula_over_the_window() -> None:
    """PSI = sum((p_live - p_ref) * ln(p_live / p_ref)), an empty bin's proportion (live or
    reference) taken as 0.0001; exported only once the window holds min_rows, and computed over
    the last `rows` rows only (the window slides)."""
    reference = Profile(
        (Feature("c", "c", None, "categorical", (50, 30, 20, 0), categories=("a", "b", "c")),),
        window=Window(rows=100, min_rows=50, blocks=10),
    )
    monitor = DriftMonitor(reference, "psi-unit", "v1")

    def feed(values: list[str]) -> None:
        assert monitor.observe({"c": np.array(values, dtype=object)}, {})

    feed(["a"] * 40)
    assert "c" not in monitor.last_psi  # 40 rows: under min_rows
    feed(["b"] * 10)
    assert monitor.window_rows == 50 and "c" in monitor.last_psi
    feed(["a"] * 50 + ["b"] * 30 + ["c"] * 20)  # 150 rows in all: the window is the last 100
    last = (["a"] * 40 + ["b"] * 10 + ["a"] * 50 + ["b"] * 30 + ["c"] * 20)[-100:]
    live = np.array([last.count(k) for k in ("a", "b", "c")] + [0]) / 100
    ref = np.array([0.5, 0.3, 0.2, 0.0])
    live_e, ref_e = np.where(live == 0, 1e-4, live), np.where(ref == 0, 1e-4, ref)
    expected = float(np.sum((live_e - ref_e) * np.log(live_e / ref_e)))
    assert monitor.last_psi["c"] == pytest.approx(expected, rel=1e-12)
    assert sample_value(
        "kninfer_drift_psi", model="psi-unit", version="v1", feature="c"
    ) == pytest.approx(expected, rel=1e-12)
    feed(["d"] * 100)  # an unknown category: all in __other__, which the reference lacks
    assert monitor.last_psi["c"] > 5
    assert (
        sample_value(
            "kninfer_drift_unknown_category_total", model="psi-unit", version="v1", feature="c"
        )
        == 100
    )


def test_deferred_counting_equals_counting_each_request() -> None:
    """On an event loop requests wait and are counted together (DriftMonitor.observe): after
    the flush, the window, PSI and every counter are what counting each request at once gives,
    across block boundaries and with requests that carry different features (some without
    the output)."""
    rng = np.random.default_rng(11)
    frame = pd.DataFrame({"n": rng.normal(size=400), "c": rng.choice(["a", "b"], 400)})
    reference = build_profile(
        frame,
        outputs=np.where(frame["n"] > 0, "p", "q"),
        window_rows=100,
        min_rows=50,
        window_blocks=4,
    )
    at_once = DriftMonitor(reference, "each-request", "v1")
    deferred = DriftMonitor(reference, "deferred", "v1")
    requests = []
    for size in rng.integers(1, 40, 30).tolist():
        rows = pd.DataFrame({"n": rng.normal(0.5, 1, size), "c": rng.choice(["a", "b", "z"], size)})
        outputs = {} if size % 3 else {"predict": np.where(rows["n"] > 0, "p", "q")}
        requests.append(
            ({"n": rows["n"].to_numpy(), "c": rows["c"].to_numpy(dtype=object)}, outputs)
        )
    for inputs, outputs in requests:
        assert at_once.observe(inputs, outputs)

    async def serve() -> None:
        for inputs, outputs in requests:
            assert deferred.observe(inputs, outputs)
        assert deferred._pending  # waiting for the timer, the row threshold or a scrape

    asyncio.run(serve())
    assert deferred.flush() and not deferred._pending
    assert deferred.window_rows == at_once.window_rows
    assert deferred.last_psi == pytest.approx(at_once.last_psi, rel=1e-12)
    for feature in ("n", "c", "output:predict"):
        ours = {
            s.labels.get("bin"): s.value
            for m in REGISTRY.collect()
            for s in m.samples
            if s.name == "kninfer_drift_bin_total"
            and s.labels["feature"] == feature
            and s.labels["model"] == "deferred"
        }
        theirs = {
            s.labels.get("bin"): s.value
            for m in REGISTRY.collect()
            for s in m.samples
            if s.name == "kninfer_drift_bin_total"
            and s.labels["feature"] == feature
            and s.labels["model"] == "each-request"
        }
        assert ours == theirs and sum(ours.values()) > 0, feature
    for name in ("kninfer_drift_out_of_range_total", "kninfer_drift_unknown_category_total"):
        feature = "n" if "range" in name else "c"
        assert sample_value(name, model="deferred", version="v1", feature=feature) == sample_value(
            name, model="each-request", version="v1", feature=feature
        )


def test_the_matrix_form_counts_into_the_column_features() -> None:
    """An all-numeric DataFrame model takes its columns one by one or as one `input-0`
    matrix: both count into the same bins."""
    rng = np.random.default_rng(6)
    frame = pd.DataFrame({"a": rng.normal(size=500), "b": rng.uniform(size=500)})
    profile = build_profile(frame)
    assert profile.matrix == ("input-0", ("a", "b"))
    columns, matrix = DriftMonitor(profile, "cols", "v"), DriftMonitor(profile, "matrix", "v")
    rows = frame.head(64)
    assert columns.observe({"a": rows["a"].to_numpy(), "b": rows["b"].to_numpy()}, {})
    assert matrix.observe({"input-0": rows.to_numpy()}, {})
    for feature in ("a", "b"):
        for b in range(10):
            labels = {"version": "v", "feature": feature, "bin": str(b)}
            assert sample_value("kninfer_drift_bin_total", model="cols", **labels) == sample_value(
                "kninfer_drift_bin_total", model="matrix", **labels
            )
    assert (
        sum(
            sample_value(
                "kninfer_drift_bin_total", model="matrix", version="v", feature="a", bin=str(b)
            )
            for b in range(10)
        )
        == 64
    )


def test_an_error_while_counting_stops_counting_and_raises_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    monitor = DriftMonitor(build_profile(pd.DataFrame({"n": [1.0, 2.0, 3.0]})), "broken", "v")
    with caplog.at_level(logging.ERROR, logger="kninfer"):
        assert not monitor.observe({"n": np.array(["text"])}, {})
        assert not monitor.observe({"n": np.array([1.0])}, {})
    assert [r.getMessage().count("drift monitoring stopped") for r in caplog.records] == [1]


def test_an_unusable_profile_is_logged_and_the_model_served_without(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert load_monitor(tmp_path, "none", "v") is None  # no profile: nothing, no log
    (tmp_path / PROFILE_FILE).write_text(
        '{"format": "kninfer-drift-profile", "format_version": 1, "features": [{"name": "x"}]}'
    )
    with caplog.at_level(logging.ERROR, logger="kninfer"):
        assert load_monitor(tmp_path, "bad", "v") is None
    assert "serving without drift monitoring" in caplog.text
