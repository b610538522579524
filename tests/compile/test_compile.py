"""`kninfer compile` (kninfer.compile, docs/compile.md): scikit-learn models built here, compiled
through the real command in subprocesses, and the graph it wrote run through ONNX Runtime against
the estimator on held-out rows it never saw. The refusals (no converter, a converter that fails,
a graph that disagrees, rows that cannot be made up, an untrusted skops file) exit non-zero and
write nothing.

The commands run together (`compiled`, a module fixture: each start imports scikit-learn, skl2onnx
and kserve), and each test reads its own case's outcome.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.paths import ROOT
from tests.support.servers import server_env

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
CITIES = ["Lyon", "Oslo", "Porto", "Quito"]
PLANS = ["basic", "plus", "pro"]


# ---- data ---------------------------------------------------------------------------------------


def customers(n: int, seed: int) -> Any:
    """A DataFrame with numeric columns (income has gaps) and string columns, and two targets:
    `churn` (string labels) and `spend` (a number)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.uniform(18, 80, n),
            "city": rng.choice(CITIES, n),
            "income": rng.normal(40_000, 12_000, n),
            "plan": rng.choice(PLANS, n),
        }
    )
    frame.loc[rng.random(n) < 0.08, "income"] = np.nan
    score = (
        (frame["age"] - 45) / 10
        + (frame["plan"] == "basic") * 1.5
        - frame["income"].fillna(40_000) / 20_000
        + rng.normal(0, 0.5, n)
    )
    frame["churn"] = np.where(score > -1.0, "leave", "stay")
    frame["spend"] = (
        frame["age"] * 3
        + frame["income"].fillna(40_000) / 1000
        + (frame["city"] == "Oslo") * 25
        + rng.normal(0, 5, n)
    )
    return frame


FEATURES = ["age", "city", "income", "plan"]


def matrix(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)) * [1.0, 10.0, 100.0, 0.1] + [0.0, 5.0, 50.0, 0.0]


def preprocessing(scale: bool = True) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = make_pipeline(SimpleImputer(), StandardScaler()) if scale else SimpleImputer()
    return ColumnTransformer(
        [
            ("numbers", numbers, ["age", "income"]),
            ("strings", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
        ]
    )


# ---- the cases ----------------------------------------------------------------------------------


@dataclass
class Case:
    """A model directory, the command's extra arguments, and what the command did."""

    directory: Path
    estimator: Any
    held_out: Any
    args: list[str] = field(default_factory=list)
    done: subprocess.CompletedProcess[str] | None = None

    @property
    def result(self) -> subprocess.CompletedProcess[str]:
        assert self.done is not None
        return self.done

    def record(self) -> dict[str, Any]:
        return dict(json.loads((self.directory / "compile.json").read_text()))


def _save_joblib(directory: Path, estimator: Any, name: str = "model.joblib") -> None:
    import joblib

    directory.mkdir(parents=True)
    joblib.dump(estimator, directory / name)


def _save_skops(directory: Path, estimator: Any) -> None:
    import skops.io as sio

    directory.mkdir(parents=True)
    sio.dump(estimator, directory / "model.skops")


def build_cases(root: Path) -> dict[str, Case]:
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    train, test = customers(400, seed=1), customers(200, seed=2)
    x_train, x_test = matrix(400, seed=3), matrix(200, seed=4)
    spam = np.where(x_train[:, 0] + x_train[:, 1] / 10 > 0.5, "spam", "ham")
    three = (x_train[:, 0] > 0).astype(int) + (x_train[:, 2] > 50)
    amount = x_train @ [1.0, 2.0, 0.5, 3.0] + 7
    cases: dict[str, Case] = {}

    def add(
        name: str,
        estimator: Any,
        held_out: Any,
        save: Callable[[Path, Any], None],
        args: list[str] | None = None,
    ) -> Case:
        directory = root / name
        save(directory, estimator)
        cases[name] = Case(directory, estimator, held_out, args or [])
        return cases[name]

    # A DataFrame pipeline with string columns and string labels; rows generated from the fitted
    # encoder categories, imputer and scaler.
    logistic = make_pipeline(preprocessing(), LogisticRegression(max_iter=500))
    add(
        "logistic_frame",
        logistic.fit(train[FEATURES], train["churn"]),
        test[FEATURES],
        _save_joblib,
    )
    # Gradient boosting on the same columns, from a skops file, verified on a CSV sample that
    # also holds the targets (columns the model does not take are left aside). A SimpleImputer
    # fitted on a DataFrame keeps a numpy.dtype, and skops trusts no sklearn Tree (its node
    # indices are not bounds-checked), unless told: as `kninfer serve` needs them.
    boosted = make_pipeline(preprocessing(), GradientBoostingClassifier(n_estimators=15))
    case = add(
        "boosting_classifier_skops",
        boosted.fit(train[FEATURES], train["churn"]),
        test[FEATURES],
        _save_skops,
    )
    train.to_csv(case.directory / "train.csv", index=False)
    case.args = [
        "--sample",
        str(case.directory / "train.csv"),
        "--skops-trusted",
        "numpy.dtype,sklearn.tree._tree.Tree",
    ]
    # A regressor behind an imputer only: its trees read income as given. The sample is JSON.
    regressor = make_pipeline(
        preprocessing(scale=False), GradientBoostingRegressor(n_estimators=30, random_state=0)
    )
    case = add(
        "boosting_regressor_frame",
        regressor.fit(train[FEATURES], train["spend"]),
        test[FEATURES],
        _save_joblib,
    )
    records = json.loads(train[FEATURES].head(150).to_json(orient="records"))
    (case.directory / "rows.json").write_text(json.dumps(records))
    case.args = ["--sample", str(case.directory / "rows.json")]
    # An array-fitted linear model: nothing fitted bounds its features, so the sample is needed
    # (a CSV without a header, as numpy.savetxt writes it).
    case = add("linear_matrix", LinearRegression().fit(x_train, amount), x_test, _save_joblib)
    np.savetxt(case.directory / "x.csv", x_train[:100], delimiter=",")
    case.args = ["--sample", str(case.directory / "x.csv")]
    # Trees on an array, rows generated from their split thresholds.
    add(
        "tree_matrix",
        DecisionTreeClassifier(max_depth=6, random_state=0).fit(x_train, three),
        x_test,
        _save_joblib,
    )
    # An odd number of trees: a forest of fully split trees with an even count ties its vote.
    add(
        "forest_matrix",
        RandomForestClassifier(n_estimators=25, max_depth=6, random_state=0).fit(x_train, spam),
        x_test,
        _save_joblib,
    )
    add(
        "extra_trees_scaled",
        make_pipeline(
            StandardScaler(), ExtraTreesClassifier(n_estimators=25, max_depth=6, random_state=0)
        ).fit(x_train, spam),
        x_test,
        _save_joblib,
    )
    forest = RandomForestRegressor(n_estimators=20, max_depth=8, random_state=0)
    add("forest_regressor", forest.fit(x_train, amount), x_test, _save_joblib)

    # Refusals.
    # The same forest with no tolerance: float32 thresholds and sums move its outputs a little.
    add("zero_tolerance", forest, x_test, _save_joblib, ["--rtol", "0", "--atol", "0"])
    from sklearn.kernel_ridge import KernelRidge  # no skl2onnx converter

    add(
        "no_converter",
        make_pipeline(StandardScaler(), KernelRidge()).fit(x_train, amount),
        x_test,
        _save_joblib,
    )
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    # skl2onnx's OneHotEncoder converter raises on infrequent categories.
    infrequent = make_pipeline(
        ColumnTransformer(
            [
                (
                    "strings",
                    OneHotEncoder(min_frequency=120, handle_unknown="infrequent_if_exist"),
                    ["city"],
                ),
                ("numbers", "passthrough", ["age"]),
            ]
        ),
        LogisticRegression(),
    )
    add(
        "converter_fails",
        infrequent.fit(train[["age", "city"]], train["churn"]),
        None,
        _save_joblib,
    )
    add("needs_sample", LinearRegression().fit(x_train, amount), None, _save_joblib)
    from sklearn.preprocessing import FunctionTransformer

    # skops does not trust functools.partial nor numpy.clip without being told.
    clipped = make_pipeline(
        FunctionTransformer(functools.partial(np.clip, a_min=0, a_max=None)),
        StandardScaler(),
        LogisticRegression(),
    )
    add("untrusted_skops", clipped.fit(x_train, spam), None, _save_skops)
    return cases


def save_mlflow(directory: Path) -> Case:
    """An MLflow model of the sklearn flavor, saved as skops with a DataFrame input example."""
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    train, test = customers(300, seed=5), customers(100, seed=6)
    model = make_pipeline(preprocessing(), LogisticRegression(max_iter=500))
    model.fit(train[FEATURES], train["churn"])
    # pip_requirements given: otherwise save_model infers them in a subprocess. The imputer's
    # numpy.dtype is listed in MLmodel for MLflow's own loader; kninfer compile needs it on its
    # command line (test_mlflow_trusted_types_are_not_taken_from_the_model).
    mlflow.sklearn.save_model(
        model,
        str(directory),
        serialization_format="skops",
        input_example=train[FEATURES].dropna().head(5),
        pip_requirements=["scikit-learn"],
        skops_trusted_types=["numpy.dtype"],
    )
    return Case(directory, model, test[FEATURES], ["--skops-trusted", "numpy.dtype"])


def compile_command(
    directory: Path, args: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kninfer", "compile", str(directory), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    pytest.importorskip("skl2onnx", reason="the compile extra is not installed")
    pytest.importorskip("onnxruntime", reason="the compile extra is not installed")
    root = tmp_path_factory.mktemp("compile")
    cases = build_cases(root)
    if _has_mlflow():
        cases["mlflow"] = case = save_mlflow(root / "mlflow")
        shutil.copytree(case.directory, root / "mlflow_untrusted")
        cases["mlflow_untrusted"] = Case(root / "mlflow_untrusted", case.estimator, None)
    env = server_env(root)
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {
            name: pool.submit(compile_command, case.directory, case.args, env)
            for name, case in cases.items()
        }
        for name, future in futures.items():
            cases[name].done = future.result()
    return cases


def _has_mlflow() -> bool:
    try:
        import mlflow.sklearn  # noqa: F401
    except ImportError:
        return False
    return True


# ---- checks -------------------------------------------------------------------------------------


def onnx_answers(directory: Path, rows: Any) -> dict[str, np.ndarray]:
    """model.onnx run as a server would run it: one input per compile.json input, by name and
    datatype, every output named there."""
    import onnxruntime as ort

    record = json.loads((directory / "compile.json").read_text())
    feed: dict[str, np.ndarray] = {}
    for spec in record["inputs"]:
        name = spec["name"]
        if len(spec["shape"]) == 2:
            feed[name] = np.asarray(rows, dtype=np.float64)
        elif spec["datatype"] == "BYTES":
            feed[name] = rows[name].to_numpy(dtype=object)
        else:
            feed[name] = rows[name].to_numpy(dtype=np.float64)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        str(directory / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    names = [spec["name"] for spec in record["outputs"]]
    assert [o.name for o in session.get_outputs()] == names
    return dict(zip(names, session.run(names, feed), strict=True))


def assert_same_answers(case: Case) -> None:
    """The written graph answers the held-out rows as the estimator does."""
    answers = onnx_answers(case.directory, case.held_out)
    expected = case.estimator.predict(case.held_out)
    if hasattr(case.estimator, "classes_"):
        assert answers["predict"].tolist() == expected.tolist()
        np.testing.assert_allclose(
            answers["predict_proba"], case.estimator.predict_proba(case.held_out), **TOLERANCE
        )
    else:
        assert answers["predict"].shape == expected.shape
        np.testing.assert_allclose(answers["predict"], expected, **TOLERANCE)


def assert_written(case: Case) -> dict[str, Any]:
    """Exit 0 with the summary, compile.json pinning the source file by its sha256."""
    done = case.result
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("verified "), done.stdout
    assert f"wrote {case.directory / 'model.onnx'}" in done.stdout
    record = case.record()
    source = case.directory / record["source"]["file"]
    assert record["source"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    graph = (case.directory / "model.onnx").read_bytes()
    assert record["onnx"]["sha256"] == hashlib.sha256(graph).hexdigest()
    assert set(record["versions"]) >= {"scikit-learn", "skl2onnx", "onnx", "onnxruntime"}
    assert record["verification"]["passed"] is True
    assert record["verification"]["differing_rows"] == 0
    return record


def assert_nothing_written(case: Case) -> None:
    assert not (case.directory / "model.onnx").exists()
    assert not (case.directory / "compile.json").exists()


FRAME_INPUTS = [
    {"name": "age", "datatype": "FP64", "shape": [-1]},
    {"name": "city", "datatype": "BYTES", "shape": [-1]},
    {"name": "income", "datatype": "FP64", "shape": [-1]},
    {"name": "plan", "datatype": "BYTES", "shape": [-1]},
]
MATRIX_INPUT = [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]


# ---- tests --------------------------------------------------------------------------------------


def test_dataframe_pipeline_with_string_columns_and_labels(compiled: dict[str, Case]) -> None:
    case = compiled["logistic_frame"]
    record = assert_written(case)
    assert record["source"] == {**record["source"], "file": "model.joblib", "format": "joblib"}
    assert "OneHotEncoder" in record["source"]["estimator"]
    assert record["inputs"] == FRAME_INPUTS  # one V2 input per column, strings as BYTES
    assert record["outputs"] == [
        {"name": "predict", "datatype": "BYTES", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]},
    ]
    (source,) = record["verification"]["row_sources"]
    assert source["source"] == "generated" and source["rows"] == 1000
    assert set(source["values_from"]) == {"encoder categories", "StandardScaler"}
    assert case.held_out["income"].isna().any()  # the imputer's path is in the held-out rows
    assert_same_answers(case)


def test_gradient_boosting_classifier_from_skops_on_a_csv_sample(compiled: dict[str, Case]) -> None:
    case = compiled["boosting_classifier_skops"]
    record = assert_written(case)
    assert record["source"]["file"] == "model.skops" and record["source"]["format"] == "skops"
    assert record["inputs"] == FRAME_INPUTS
    assert record["verification"]["row_sources"] == [
        {"source": "sample", "rows": 400, "file": str(case.directory / "train.csv")}
    ]
    assert "verified 400 rows (400 sample)" in case.result.stdout
    assert_same_answers(case)


def test_gradient_boosting_regressor_on_a_json_sample(compiled: dict[str, Case]) -> None:
    case = compiled["boosting_regressor_frame"]
    record = assert_written(case)
    assert record["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
    assert record["verification"]["row_sources"][0]["rows"] == 150
    assert record["verification"]["outputs"]["predict"]["max_abs_diff"] > 0  # float32 trees
    assert_same_answers(case)


@pytest.mark.parametrize(
    "name",
    ["linear_matrix", "tree_matrix", "forest_matrix", "extra_trees_scaled", "forest_regressor"],
)
def test_array_fitted_models(compiled: dict[str, Case], name: str) -> None:
    case = compiled[name]
    record = assert_written(case)
    assert record["inputs"] == MATRIX_INPUT
    (source,) = record["verification"]["row_sources"]
    if name == "linear_matrix":
        assert source == {"source": "sample", "rows": 100, "file": str(case.directory / "x.csv")}
        assert record["onnx"]["numeric_inputs_converted_as"] == "FP64"  # as scikit-learn computes
    else:
        assert source["source"] == "generated"
        expected = "StandardScaler" if name == "extra_trees_scaled" else "tree thresholds"
        assert source["values_from"] == [expected]
    if name == "forest_matrix":
        assert record["outputs"][0] == {"name": "predict", "datatype": "BYTES", "shape": [-1]}
    if name == "tree_matrix":
        assert record["outputs"] == [
            {"name": "predict", "datatype": "INT64", "shape": [-1]},
            {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
        ]
    assert_same_answers(case)


def test_mlflow_sklearn_flavor(compiled: dict[str, Case]) -> None:
    if "mlflow" not in compiled:
        pytest.skip("the mlflow extra is not installed")
    case = compiled["mlflow"]
    record = assert_written(case)
    assert record["source"]["file"] == "model.skops"
    assert record["source"]["format"] == "mlflow-skops"
    assert record["inputs"] == FRAME_INPUTS
    # The saved example's rows first, then generated ones up to --rows.
    example, generated = record["verification"]["row_sources"]
    assert example == {"source": "input example", "rows": 5, "file": "input_example.json"}
    assert generated["source"] == "generated" and generated["rows"] == 995
    assert_same_answers(case)


def test_mlflow_trusted_types_are_not_taken_from_the_model(compiled: dict[str, Case]) -> None:
    """MLmodel's skops_trusted_types come from the store the file came from: kninfer compile
    trusts what its command line (or KNINFER_SKOPS_TRUSTED) says, as `kninfer serve` does."""
    if "mlflow" not in compiled:
        pytest.skip("the mlflow extra is not installed")
    case = compiled["mlflow_untrusted"]
    assert case.result.returncode == 1
    assert "model.skops contains types skops does not trust: numpy.dtype" in case.result.stderr
    assert_nothing_written(case)


def test_an_estimator_without_a_converter_is_one_line_and_writes_nothing(
    compiled: dict[str, Case],
) -> None:
    case = compiled["no_converter"]
    assert case.result.returncode == 1
    assert case.result.stderr.splitlines() == [
        "kninfer compile: KernelRidge (in Pipeline) has no ONNX converter in skl2onnx "
        f"{_version('skl2onnx')}; model.onnx not written; the model keeps being served by "
        "scikit-learn"
    ]
    assert_nothing_written(case)


def test_a_failing_converter_is_one_line_naming_the_estimator(compiled: dict[str, Case]) -> None:
    case = compiled["converter_fails"]
    assert case.result.returncode == 1
    (line,) = case.result.stderr.splitlines()
    assert line.startswith(
        "kninfer compile: OneHotEncoder (in Pipeline) did not convert to ONNX with skl2onnx"
    ), line
    assert "NotImplementedError: Infrequent categories" in line
    assert line.endswith("model.onnx not written; the model keeps being served by scikit-learn")
    assert_nothing_written(case)


def test_outputs_beyond_tolerance_are_refused_with_the_rows(compiled: dict[str, Case]) -> None:
    case = compiled["zero_tolerance"]
    assert case.result.returncode == 1
    lines = case.result.stderr.splitlines()
    assert lines[0].startswith("kninfer compile: the ONNX graph disagrees with scikit-learn on ")
    assert lines[0].endswith(" of 1000 rows:")
    rows = [line for line in lines if line.startswith("  generated row ")]
    assert len(rows) == 5, lines  # the first few, then how many more
    assert all(" in ONNX, " in row and "allowed 0)" in row for row in rows)
    assert lines[6].startswith("  ... and ") and lines[6].endswith(" more row(s)")
    assert "model.onnx not written; the model keeps being served by scikit-learn" in lines[-1]
    assert_nothing_written(case)
    # The forest itself compiles within the default tolerance (test_array_fitted_models).
    assert compiled["forest_regressor"].result.returncode == 0


def test_rows_that_cannot_be_made_up_ask_for_a_sample(compiled: dict[str, Case]) -> None:
    case = compiled["needs_sample"]
    assert case.result.returncode == 2
    assert (
        "cannot make up verification rows for feature 0, feature 1, feature 2, feature 3"
        in case.result.stderr
    )
    assert "--sample FILE" in case.result.stderr
    assert_nothing_written(case)


def test_a_skops_file_is_held_to_the_serving_trust_rules(compiled: dict[str, Case]) -> None:
    case = compiled["untrusted_skops"]
    assert case.result.returncode == 1
    assert (
        "model.skops contains types skops does not trust: functools.partial, numpy.clip"
        in case.result.stderr
    )
    assert_nothing_written(case)


def test_a_perturbed_graph_is_refused_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Outputs moved after the conversion (as a broken converter would) are caught by the
    comparison: the rows named, exit 1, nothing written; an earlier model.onnx left as it was."""
    pytest.importorskip("skl2onnx", reason="the compile extra is not installed")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    import kninfer.compile.build as build
    from kninfer.cli import main

    train = customers(200, seed=7)
    model = make_pipeline(preprocessing(), LogisticRegression(max_iter=500))
    _save_joblib(tmp_path / "m", model.fit(train[FEATURES], train["churn"]))
    real = build.onnx_outputs

    def perturbed(session: Any, feed: dict[str, np.ndarray], outputs: Any) -> dict[str, Any]:
        answers = real(session, feed, outputs)
        answers["predict_proba"] = answers["predict_proba"].copy()
        answers["predict_proba"][[3, 17], 0] += 1e-3
        return answers

    monkeypatch.setattr(build, "onnx_outputs", perturbed)
    monkeypatch.setattr(sys, "argv", ["kninfer"])  # the command hides argv from kserve
    (tmp_path / "m" / "model.onnx").write_bytes(b"an earlier graph")
    assert main(["compile", str(tmp_path / "m"), "--rows", "50"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "kninfer compile: the ONNX graph disagrees with scikit-learn on 2 of 50 rows:"
    assert err[1].startswith("  generated row 3: predict_proba[0] is ")
    assert "(differs by 0.001, allowed 1." in err[1]
    assert err[2].startswith("  generated row 17: predict_proba[0] is ")
    assert err[3].startswith("predict: every label equal; predict_proba: max |diff| 0.001, ")
    assert err[-1].endswith("is left as it was; its compile.json names the source it was made from")
    assert (tmp_path / "m" / "model.onnx").read_bytes() == b"an earlier graph"
    assert not (tmp_path / "m" / "compile.json").exists()


def test_a_differing_label_on_a_tie_says_so() -> None:
    """A forest with an even number of trees can split its vote evenly; scikit-learn takes the
    first class, the graph's float32 sums may tip the other way. The report says it is a tie."""
    from kninfer.compile.verify import compare
    from kninfer.protocol.tensor import TensorSpec

    outputs = [TensorSpec("predict", "BYTES", (-1,)), TensorSpec("predict_proba", "FP64", (-1, 2))]
    expected = {
        "predict": np.array(["ham", "ham"], dtype=object),
        "predict_proba": np.array([[0.5, 0.5], [0.9, 0.1]]),
    }
    actual = {
        "predict": np.array(["spam", "ham"], dtype=object),
        "predict_proba": np.array([[0.49999997, 0.50000003], [0.9, 0.1]], np.float32),
    }
    report = compare(expected, actual, outputs, ["row 0", "row 1"], 1e-5, 1e-5, True)
    assert not report.passed and report.differing_rows == 1
    assert report.lines == [
        "row 0: predict is 'spam' in ONNX, 'ham' in scikit-learn (a tie: "
        "scikit-learn's top two probabilities are both 0.5)"
    ]
    assert report.checks[1].differing_rows == 0  # the probabilities are within tolerance


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def test_untouched_sources(compiled: dict[str, Case]) -> None:
    """Compiling reads the model directory and adds two files to it, nothing else."""
    case = compiled["logistic_frame"]
    assert sorted(p.name for p in case.directory.iterdir()) == [
        "compile.json",
        "model.joblib",
        "model.onnx",
    ]


def test_declared_inputs_are_followed_as_serve_follows_them(tmp_path: Path) -> None:
    """kninfer.yaml and --input-spec declare the inputs for `kninfer compile` as for `kninfer
    serve`: a declaration of a column the model was not fitted on is refused (exit 2), and the
    graph takes a declared BYTES column as strings."""
    from tests.support.compiled_models import churn, compiled_here, kninfer_compile

    model_dir = churn(tmp_path / "churn").directory
    for name in ("model.onnx", "compile.json"):
        (model_dir / name).unlink()
    (model_dir / "kninfer.yaml").write_text(
        "inputs:\n  - {name: postcode, datatype: BYTES, shape: [-1]}\n"
    )
    done = kninfer_compile(model_dir)
    assert done.returncode == 2, done.stdout
    assert (
        "declared input(s) postcode are not columns the model was fitted on "
        "(age, city, income, plan)"
    ) in done.stderr
    assert not (model_dir / "model.onnx").exists()
    spec = "[{name: age, datatype: FP32, shape: [-1]}, {name: city, datatype: BYTES, shape: [-1]}]"
    compiled_here(model_dir, "--input-spec", spec)
    record = json.loads((model_dir / "compile.json").read_text())
    assert {i["name"]: i["datatype"] for i in record["inputs"]} == {
        "age": "FP64",
        "city": "BYTES",
        "income": "FP64",
        "plan": "BYTES",
    }
