"""The sklearn family's ONNX Runtime: a model compiled by `kninfer compile`, served from its
`model.onnx` without importing scikit-learn (or scipy).

The sklearn family picks it (kninfer.predictors.sklearn_runtime, `--runtime`): `auto` when the
model directory holds a model.onnx, `onnx` always. It is the family's other runtime, not a
family: the same inputs (one per DataFrame column, or `input-0` [-1, n]; the declarations of
kninfer.yaml / --input-spec), the same outputs (`predict`, an optional `predict_proba`), the
same V1 and MLflow forms and the same refusals, through the code of
kninfer.predictors.sklearn, which this class extends. Only the platform in V2 metadata says
which runtime answers ("kninfer-sklearn-onnx").

The graph already takes and gives the served tensors (kninfer.compile.graph); here requests
are checked as the native model's, cast to the graph's input types, and run by an ONNX Runtime
session sized for the container (kninfer.predictors.onnx_runtime) on the predictor's worker
threads. compile.json beside the graph is required: it must describe this graph (its sha256),
and, when the scikit-learn file it was compiled from is still in the directory, that file
must be the one compiled; a graph left behind by a retrained model is refused at start-up,
never served.

What the graph cannot tell is decided conservatively, so no request gets an answer the
scikit-learn model would not give:

- NaN is taken only in an input the graph handles it for (every path from the input meets a
  NaN-replacing Imputer, or a tree ensemble that routes missing values). scikit-learn's own
  missing-value support (a bare forest's, since 1.4) is not in the converted trees, so the
  graph would answer such a row differently: it is refused (400) instead.
- A graph converted for float32 (compile.json `numeric_inputs_converted_as`) refuses finite
  values beyond float32's range, as the native family does for a bare tree model.
- A string column takes a string in every row: an ONNX string tensor has no missing value.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from kninfer.errors import InvalidInput, ModelLoadError
from kninfer.predictors.base import Arrays, model_rejected, result_array
from kninfer.predictors.compiled_graph import ONNX_FILE, read_compiled
from kninfer.predictors.onnx_runtime import (
    ORT_TYPES,
    container_cpus,
    graph_facts,
    inference_session,
    quiet_run_options,
    run_error_text,
    run_errors,
)
from kninfer.predictors.sklearn import NUMERIC_INPUTS, SklearnPredictor
from kninfer.predictors.sklearn_columns import Columns, column_spec, read_columns
from kninfer.predictors.spec import declared_spec
from kninfer.protocol.tensor import V2_TO_NUMPY, TensorSpec

logger = logging.getLogger("kninfer")

PLATFORM = "kninfer-sklearn-onnx"
# What --runtime native serves instead, for kninfer.predictors.compiled_graph's messages.
NATIVE = "the scikit-learn file"
OUTPUTS = ("predict", "predict_proba")
# scikit-learn's tree models, which cast X to float32 (kninfer.predictors.sklearn
# _computes_in_float32 tells them by module; compile.json names only the class).
FLOAT32_MODELS = (
    "DecisionTree",
    "ExtraTree",
    "RandomForest",
    "GradientBoosting",
    "IsolationForest",
)
FLOAT32_MAX = float(np.finfo(np.float32).max)


class OnnxSklearnPredictor(SklearnPredictor):
    """A compiled scikit-learn model (model.onnx) through ONNX Runtime."""

    # A graph of tree and linear operators runs no user code: its time grows with the rows and
    # nothing else, so a fast one may run on the event loop (Execution.decide_inline).
    inline_capable = True
    session: Any = None
    record: dict[str, Any] | None = None
    # The graph's input names, in order, and the numpy dtype each takes.
    _graph_inputs: list[str]
    _graph_dtypes: dict[str, Any]
    # Inputs (graph names) whose NaN the graph handles.
    _nan_inputs: frozenset[str] = frozenset()
    # String inputs whose encoder refuses unknown categories -> the categories it knows.
    _known_only: dict[str, frozenset[str]]
    _estimator: str = "the compiled model"
    # String columns the warm-up row can only guess a value for (no example, no encoder).
    _guessed_strings = False

    @property
    def platform(self) -> str:
        return PLATFORM

    def estimator_name(self) -> str:
        return self._estimator

    # ---- loading -------------------------------------------------------------------------

    def load_model(self) -> None:
        compiled = read_compiled(self.model_dir, self.settings.model_sha256, NATIVE)
        graph, record = compiled.graph, compiled.record
        self.record = record
        source = compiled.section("source")
        described = str(source.get("estimator") or "")
        self._estimator = described.split("(", 1)[0] or self._estimator
        onnx = compiled.section("onnx")
        precision = onnx.get("numeric_inputs_converted_as")
        self._float32 = precision == "FP32" or (
            described == self._estimator and self._estimator.startswith(FLOAT32_MODELS)
        )
        threads = container_cpus()
        try:
            self.session = inference_session(graph, threads)
        except Exception as exc:  # onnxruntime's own error types: a graph it cannot load
            raise ModelLoadError(
                f"ONNX Runtime could not load {ONNX_FILE}: "
                f"{type(exc).__name__}: {run_error_text(exc)}"
            ) from exc
        facts = graph_facts(graph)
        self._run_options = quiet_run_options()
        self._client_errors = run_errors()
        self._read_outputs()
        self._read_inputs(facts.categories)
        self._nan_inputs = facts.nan_inputs
        self._known_only = {
            name: frozenset(facts.categories.get(name, ())) for name in facts.strict
        }
        if self.columns is None:
            self._allow_nan = self._graph_inputs[0] in facts.nan_inputs
        else:
            # Each column's NaN is judged in validate_arrays; the checks shared with the native
            # model (infinity, the matrix form's shape) must let it through to there.
            self._allow_nan = True
        logger.info(
            "model '%s': serving %s through ONNX Runtime (%d intra-op thread(s)), "
            "compiled from %s %s",
            self.name,
            ONNX_FILE,
            threads,
            source.get("file", "?"),
            described or "",
        )

    def _read_outputs(self) -> None:
        outputs = self.session.get_outputs()
        names = [o.name for o in outputs]
        if names not in (list(OUTPUTS[:1]), list(OUTPUTS)):
            raise ModelLoadError(
                f"{ONNX_FILE} gives {', '.join(names)}; kninfer serves graphs "
                "that give predict (and predict_proba), as `kninfer compile` "
                "writes them"
            )
        self.outputs = [
            TensorSpec(
                o.name, self._datatype(o), _shape(o.shape), optional=o.name == "predict_proba"
            )
            for o in outputs
        ]
        if len(outputs) == 2 or self.outputs[0].datatype != "FP64":
            # A classifier's labels and probabilities are never NaN (SklearnPredictor).
            self._finite_outputs = frozenset(OUTPUTS)

    def _read_inputs(self, categories: dict[str, list[str]]) -> None:
        graph_inputs = self.session.get_inputs()
        self._graph_inputs = [i.name for i in graph_inputs]
        types = {i.name: self._datatype(i) for i in graph_inputs}
        self._graph_dtypes = {name: V2_TO_NUMPY[datatype] for name, datatype in types.items()}
        shapes = [_shape(i.shape) for i in graph_inputs]
        matrix = len(graph_inputs) == 1 and len(shapes[0]) == 2
        declared = self.declared_inputs(matrix)
        if matrix:
            # Fitted on an array: one [-1, n] matrix, declared or not, as the native model.
            name = self._graph_inputs[0]
            if types[name] == "BYTES":
                raise ModelLoadError(
                    f"{ONNX_FILE} takes strings as a [-1, n] matrix; kninfer "
                    "serves the matrices `kninfer compile` writes (numbers)"
                )
            self.matrix = TensorSpec("input-0", "FP64", shapes[0], accepts=NUMERIC_INPUTS)
            spec = self._array_input(shapes[0][1], declared)
            if spec.datatype == "BYTES":
                raise ModelLoadError(
                    f"declared input '{spec.name}' is BYTES, but {ONNX_FILE} "
                    "takes numbers; serve the scikit-learn file with --runtime "
                    "native, or declare a numeric datatype"
                )
            self.inputs = [spec]
            return
        if any(len(shape) != 1 for shape in shapes):
            listed = ", ".join(
                f"{n} {list(s)}" for n, s in zip(self._graph_inputs, shapes, strict=True)
            )
            raise ModelLoadError(
                f"{ONNX_FILE} takes {listed}: neither one [-1, n] matrix nor "
                "one [-1] input per column, as `kninfer compile` writes them"
            )
        self.columns = self._columns(types, declared, categories)
        self.inputs = list(self.columns.specs)
        self.matrix = (
            TensorSpec("input-0", "FP64", (-1, len(self.inputs)), accepts=NUMERIC_INPUTS)
            if self.columns.all_numeric
            else None
        )

    def declared_inputs(self, matrix: bool) -> list[TensorSpec] | None:
        """The inputs declared for the model (kninfer.yaml, --input-spec), if any; `matrix`:
        the graph takes one [-1, n] matrix rather than a column each."""
        return declared_spec(self.settings.input_spec, self.model_dir).inputs

    def _columns(
        self,
        types: dict[str, str],
        declared: list[TensorSpec] | None,
        categories: dict[str, list[str]],
    ) -> Columns:
        """The columns as the native model states them (read_columns: declared, the input
        example, else what is known), what is known coming from the graph here: a string
        column is one the graph takes strings for."""
        names = list(types)
        # No estimator to walk: read_columns then knows the declarations and the example only.
        stated = read_columns(None, names, declared, self.model_dir)
        specs: list[TensorSpec] = []
        sources: dict[str, str] = {}
        known: dict[str, list[str]] = {}
        for spec in stated.specs:
            name, graph_type = spec.name, types[spec.name]
            source = stated.sources[name]
            if source == "default":
                datatype = graph_type
                source = "fitted" if graph_type == "BYTES" else "default"
            else:
                datatype = spec.datatype
                if (datatype == "BYTES") != (graph_type == "BYTES"):
                    where = "declared" if source == "declared" else "in the input example"
                    raise ModelLoadError(
                        f"column '{name}' is {datatype} ({where}), but {ONNX_FILE} takes "
                        f"{graph_type} there; serve the scikit-learn file with --runtime native "
                        "or compile again"
                    )
            specs.append(column_spec(name, datatype))
            sources[name] = source
            if datatype == "BYTES":
                values = categories.get(name)
                if not values and not _has_example(stated, name):
                    # Nothing known of the column: an empty string, a guess (an encoder that
                    # refuses unknown categories fails on it, and warm-up is then skipped).
                    values, self._guessed_strings = [""], True
                if values:
                    known[name] = values
        return Columns(specs, sources, known, stated.example)

    def _datatype(self, arg: Any) -> str:
        datatype = ORT_TYPES.get(arg.type)
        if datatype is None:
            raise ModelLoadError(
                f"{ONNX_FILE}: '{arg.name}' is a {arg.type}; kninfer serves {', '.join(ORT_TYPES)}"
            )
        return datatype

    # ---- warm-up -------------------------------------------------------------------------

    def warmup_inputs(self) -> Arrays:
        arrays = super().warmup_inputs()
        self.warmup_guessed = self.warmup_guessed or self._guessed_strings
        if self.columns is not None:
            for spec in self.columns.specs:
                array = arrays.get(spec.name)
                if (
                    spec.datatype == "BYTES"
                    and array is not None
                    and any(v is None for v in array.tolist())
                ):
                    # A missing string in the input example: the graph takes none.
                    arrays[spec.name] = np.array(
                        (self.columns.known_strings.get(spec.name) or [""])[:1], dtype=object
                    )
                    self.warmup_guessed = True
        return arrays

    # ---- requests ------------------------------------------------------------------------

    def validate_arrays(self, arrays: Arrays) -> None:
        # Shapes, row counts, infinity and the float32 range, as the native model checks them.
        super().validate_arrays(arrays)
        if self.columns is None:
            # The matrix: NaN refused there unless the graph handles it (_allow_nan); the range
            # checked only when every value was finite.
            (values,) = arrays.values()
            if values.dtype.kind == "f":
                self._check_range(self.inputs[0].name, values)
            return
        matrix = self.matrix
        if matrix is not None and matrix.name in arrays:
            values = arrays[matrix.name]
            if values.dtype.kind == "f":
                self._check_range(matrix.name, values)
            for i, name in enumerate(self._graph_inputs):
                self._check_column(
                    f"input '{matrix.name}', column {i} ('{name}')", name, values[:, i]
                )
            return
        for name, values in arrays.items():
            self._check_column(f"input '{name}'", name, values)

    def _check_column(self, where: str, name: str, values: np.ndarray) -> None:
        if values.dtype.kind == "O":
            missing = [i for i, v in enumerate(values.tolist()) if v is None]
            if missing:
                raise InvalidInput(
                    f"{where} has a missing value (null) in row {missing[0]}; the "
                    "compiled model takes a string in every row"
                )
            known = self._known_only.get(name)
            unknown = sorted(_texts(values) - known) if known is not None else []
            if unknown:
                # Worded as scikit-learn's OneHotEncoder refuses them (handle_unknown="error"),
                # before ONNX Runtime would, with a message naming neither value nor column.
                raise model_rejected(
                    self.name,
                    ValueError(
                        f"Found unknown categories {unknown} in column '{name}' during transform"
                    ),
                )
            return
        if values.dtype.kind != "f":
            return
        nan = np.isnan(values)
        if nan.any() and name not in self._nan_inputs:
            raise InvalidInput(
                f"{where} contains NaN; {self.estimator_name()} needs a number "
                f"there ({ONNX_FILE} fills no missing value in this column)"
            )
        self._check_range(name, values)

    def _check_range(self, name: str, values: np.ndarray) -> None:
        """A graph that computes in float32 takes no finite value beyond float32's range: it
        would compute from infinity. NaN may be among the values where the graph handles it."""
        if not self._float32 or not values.size:
            return
        finite = values[np.isfinite(values)]
        if finite.size and float(np.abs(finite).max()) > FLOAT32_MAX:
            raise InvalidInput(
                f"input '{name}': a value is out of range for "
                f"{self.estimator_name()}, which computes in float32"
            )

    def run(self, inputs: Arrays, outputs: Sequence[str]) -> Arrays:
        feed = self._feed(inputs)
        try:
            values = self.session.run(list(outputs), feed, self._run_options)
        except self._client_errors as exc:
            # A value the graph refuses (an unknown category where the encoder has
            # handle_unknown="error"): the request's fault, as scikit-learn's ValueError is.
            raise model_rejected(self.name, ValueError(run_error_text(exc))) from None
        result = {
            name: result_array(name, value) for name, value in zip(outputs, values, strict=True)
        }
        for name, array in result.items():
            self._check_finite(name, array)
        return result

    def _feed(self, inputs: Arrays) -> dict[str, np.ndarray]:
        """The request's arrays as the graph's inputs take them (dtype, contiguous)."""
        if self.columns is None:
            (values,) = inputs.values()
            return {self._graph_inputs[0]: self._as_graph(self._graph_inputs[0], values)}
        matrix = self.matrix
        if matrix is not None and matrix.name in inputs:
            values = inputs[matrix.name]
            return {
                name: self._as_graph(name, values[:, i])
                for i, name in enumerate(self._graph_inputs)
            }
        return {name: self._as_graph(name, inputs[name]) for name in self._graph_inputs}

    def _as_graph(self, name: str, values: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(values, dtype=self._graph_dtypes[name])


def _texts(values: np.ndarray) -> set[str]:
    """A string column's values as text: V2 sends bytes (checked before they are decoded), V1
    str. Bytes that are not UTF-8 are left to the decoding, which refuses them by row."""
    texts = set()
    for value in values.tolist():
        if isinstance(value, bytes):
            try:
                value = value.decode()
            except UnicodeDecodeError:
                continue
        texts.add(value)
    return texts


def _shape(dims: Sequence[Any]) -> tuple[int, ...]:
    """ONNX Runtime's shape: a named or unknown dimension is any size (-1)."""
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in dims)


def _has_example(columns: Columns, name: str) -> bool:
    example = columns.example
    return example is not None and name in example and len(example[name]) > 0
