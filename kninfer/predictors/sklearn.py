"""scikit-learn predictor: any estimator or pipeline saved with skops, joblib or pickle.

Files looked for in the model directory, first match wins:
  model.skops                        (safe: skops refuses types it does not trust)
  model.joblib, model.pkl, model.pickle
  or exactly one *.skops / *.joblib / *.pkl / *.pickle file.

Trust model: joblib and pickle run arbitrary code while loading, so only serve those files from a
source you trust (your own registry/bucket); kninfer never unpickles anything from a request.
A skops file loads only types on skops' trusted list plus those named in
KNINFER_SKOPS_TRUSTED (comma-separated), so an untrusted file fails instead of running code.

Metadata comes from the estimator: one input `input-0` of shape [-1, n_features_in_]; output
`predict` ([-1], the class label datatype or FP64 for a regressor) and, for estimators with
`predict_proba`, an optional `predict_proba` output ([-1, n_classes], FP64) returned when the
request names it in `outputs`. A model whose first step is a text vectorizer (CountVectorizer,
TfidfVectorizer, HashingVectorizer) takes raw text instead: one BYTES input `input-0` of shape
[-1], one string per row, as KServe's sklearn server feeds such a pipeline. A model fitted on a
DataFrame takes its columns (kninfer.predictors.sklearn_columns). An input declared in
kninfer.yaml or --input-spec (kninfer.predictors.spec) names the input of an array-fitted model,
and BYTES there makes it take strings.

A joblib model is memory-mapped from its file by default (--joblib-mmap): its arrays are read
from that file for as long as it serves. The file is held open and its identity (device, inode,
size, mtime) compared with the one recorded at load before and after every prediction
(kninfer.storage.HeldFile); once it changed, the model is not ready and every request is a 503
saying so, never an answer computed from the new bytes. A classifier's output that is NaN or
infinite (probabilities, float class labels) is a 500, never a 200.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from kninfer.errors import InvalidInput, KninferError, ModelLoadError, ModelNotReady
from kninfer.predictors.base import Arrays, Predictor, model_rejected, result_array
from kninfer.predictors.sklearn_columns import Columns, read_columns
from kninfer.predictors.spec import declared_spec
from kninfer.protocol.tables import model_column, strings_array, tabular_arrays
from kninfer.protocol.tensor import TensorSpec, v2_datatype_of
from kninfer.protocol.v1 import v1_rows
from kninfer.protocol.v2 import has_bool, input_array
from kninfer.storage import HeldFile, model_file

if TYPE_CHECKING:
    from collections.abc import Mapping

    from kserve import InferRequest, InferResponse

logger = logging.getLogger("kninfer")

MODEL_FILES = ("model.skops", "model.joblib", "model.pkl", "model.pickle")
SUFFIXES = (".skops", ".joblib", ".pkl", ".pickle")
# The hash-pinned joblib copy `kninfer audit` writes beside a .skops model (sklearn_audit).
AUDITED_FILE = "model.audited.joblib"
NUMERIC_INPUTS = ("FP64", "FP32", "INT64", "INT32")
# scikit-learn's raw-text vectorizers (sklearn.feature_extraction.text; TfidfVectorizer is a
# CountVectorizer): a model led by one takes a sequence of strings, not a matrix.
TEXT_MODULE = "sklearn.feature_extraction.text"
TEXT_VECTORIZERS = frozenset({"CountVectorizer", "TfidfVectorizer", "HashingVectorizer"})


def find_model_file(model_dir: Path) -> Path:
    for name in MODEL_FILES:
        if (model_dir / name).is_file():
            return model_file(model_dir, name)
    candidates = sorted(p.name for p in model_dir.iterdir() if p.suffix in SUFFIXES)
    if len(candidates) == 1:
        return model_file(model_dir, candidates[0])
    if not candidates:
        raise ModelLoadError(
            f"no scikit-learn model in {model_dir}: expected one of {', '.join(MODEL_FILES)}"
        )
    raise ModelLoadError(
        f"several model files in {model_dir} ({', '.join(candidates)}); name one model.joblib "
        "or model.skops"
    )


def load_estimator(path: Path, skops_trusted: str = "", mmap: bool = False) -> Any:
    """The estimator in `path`; a .skops file may hold `skops_trusted` types (comma-separated,
    --skops-trusted) beyond skops' own trusted list. `mmap`: joblib maps the file's numpy
    arrays read-only instead of copying them (joblib.load mmap_mode="r"; a 190 MB forest
    loads in 0.13 s instead of 0.30 here; compressed files load as usual)."""
    if path.suffix == ".skops":
        import skops.io as sio

        extra = [t.strip() for t in skops_trusted.split(",") if t.strip()]
        # One pass: skops.io.load audits the types before it constructs anything and raises on
        # an untrusted one. (A separate get_untrusted_types call first parsed the whole file a
        # second time: about a third of a large forest's load.) The slow listing below runs
        # only to word the refusal.
        from skops.io.exceptions import UntrustedTypesFoundException

        try:
            return sio.load(path, trusted=extra or None)
        except UntrustedTypesFoundException:
            untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in extra]
            raise ModelLoadError(
                f"{path.name} contains types skops does not trust: {', '.join(untrusted)}; "
                "list them in KNINFER_SKOPS_TRUSTED if you trust this file"
            ) from None
    import joblib

    return joblib.load(path, mmap_mode="r" if mmap else None)


def text_vectorizer(estimator: Any) -> Any:
    """The text vectorizer that first sees a request's rows (the estimator itself, or the first
    step of a Pipeline, nested Pipelines followed), or None. Matched by class, subclasses
    included, without importing scikit-learn's text module for a model that has none."""
    step = estimator
    while hasattr(step, "steps"):
        inner = [s for _, s in step.steps if s not in (None, "passthrough")]
        if not inner:
            return None
        step = inner[0]
    for klass in type(step).__mro__:
        if klass.__module__ == TEXT_MODULE and klass.__name__ in TEXT_VECTORIZERS:
            return step
    return None


def _allows_nan(estimator: Any) -> bool:
    try:
        return bool(estimator.__sklearn_tags__().input_tags.allow_nan)
    except AttributeError:
        return False


class SklearnPredictor(Predictor):
    family = "sklearn"
    batching_by_default = False

    estimator: Any = None
    # DataFrame-fitted models: their columns (kninfer.predictors.sklearn_columns); else None.
    columns: Columns | None = None
    # The [N, n_features] tensor form: the only input of a model fitted on an array, an
    # alternative to the columns for an all-numeric DataFrame model, None otherwise.
    matrix: TensorSpec | None = None
    # The strings input (BYTES) of a text model, or of an array model declared to take strings;
    # `flat_text`: the model takes a 1-D sequence of str (one text per row), else the declared
    # [N, k] shape.
    text: TensorSpec | None = None
    flat_text: bool = False
    # The file a memory-mapped model is read from while it serves; None when the model was
    # copied into memory (skops, --no-joblib-mmap), which no later write can reach.
    mapped_file: HeldFile | None = None
    # Why the model stopped being ready (its file changed); answered in every 503 from then on.
    not_ready_reason: str | None = None
    # Taken only when a change is seen: request threads and the probes may see it at once, and
    # it is logged once.
    _change_lock: ClassVar[threading.Lock] = threading.Lock()
    _ready: bool = False
    # Outputs whose values cannot be NaN or infinite: a classifier's probabilities and labels.
    _finite_outputs: frozenset[str] = frozenset()

    # kserve.Model keeps readiness in the attribute `ready`, read by the readiness probes and
    # before every request; as a property it also turns false, without a request, once a
    # memory-mapped model's file changed, so a changed replica leaves the load balancer.
    @property
    def ready(self) -> bool:
        return self._ready and not self._file_changed()

    @ready.setter
    def ready(self, value: bool) -> None:
        self._ready = value

    def load_model(self) -> None:
        path = self._pinned(find_model_file(self.model_dir))
        # Held open from before the load, so a write during the load is seen too.
        mapped = HeldFile(path) if self.settings.joblib_mmap and path.suffix != ".skops" else None
        try:
            self.estimator = self._load(path)
            if mapped is not None and not mapped.still_at_path():
                raise ModelLoadError(
                    f"{path.name} changed while it was being loaded; start again once it is written"
                )
        except BaseException:
            if mapped is not None:
                mapped.close()
            raise
        self.mapped_file = mapped
        estimator = self.estimator
        if not hasattr(estimator, "predict"):
            kind = type(estimator).__name__
            raise ModelLoadError(f"{path.name} holds a {kind}, not an estimator")
        n_features = int(getattr(estimator, "n_features_in_", -1))
        self._allow_nan = _allows_nan(estimator)
        self._float32 = _computes_in_float32(estimator)
        names = getattr(estimator, "feature_names_in_", None)
        declared = declared_spec(self.settings.input_spec, self.model_dir).inputs
        self.matrix = TensorSpec("input-0", "FP64", (-1, n_features), accepts=NUMERIC_INPUTS)
        if names is not None:
            self.columns = read_columns(
                estimator, [str(n) for n in names], declared, self.model_dir
            )
            self.inputs = list(self.columns.specs)
            if not self.columns.all_numeric:
                self.matrix = None
        else:
            self.inputs = [self._array_input(n_features, declared)]
        classes = getattr(estimator, "classes_", None)
        if classes is not None:
            self._finite_outputs = frozenset({"predict", "predict_proba"})
            label_type = v2_datatype_of(result_array("predict", classes))
            self.outputs = [TensorSpec("predict", label_type, (-1,))]
            if hasattr(estimator, "predict_proba"):
                self.outputs.append(
                    TensorSpec("predict_proba", "FP64", (-1, len(classes)), optional=True)
                )
        else:
            n_outputs = int(getattr(estimator, "n_outputs_", 1))
            shape = (-1,) if n_outputs == 1 else (-1, n_outputs)
            self.outputs = [TensorSpec("predict", "FP64", shape)]

    def _load(self, path: Path) -> Any:
        try:
            return load_estimator(path, self.settings.skops_trusted, self.settings.joblib_mmap)
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"could not load {path}: {type(exc).__name__}: {exc}") from exc

    def _array_input(self, n_features: int, declared: list[TensorSpec] | None) -> TensorSpec:
        """The one input of a model fitted on an array (not a DataFrame): the declared one if
        any, else strings for a text model and the [N, n_features] matrix otherwise. A
        declaration the model cannot take is refused here, never advertised."""
        vectorizer = text_vectorizer(self.estimator)
        if declared is not None and len(declared) != 1:
            raise ModelLoadError(
                f"declared inputs {', '.join(s.name for s in declared)}: a scikit-learn model "
                "fitted on an array takes one input"
            )
        spec = declared[0] if declared else None
        if vectorizer is not None:
            kind = type(vectorizer).__name__
            reads = getattr(vectorizer, "input", "content")
            if reads != "content":
                # input="filename"/"file" would open whatever path a request names.
                raise ModelLoadError(
                    f"the model's {kind} has input={reads!r}: kninfer serves "
                    "text vectorizers that take the text itself "
                    "(input='content') only"
                )
            if spec is None:
                spec = TensorSpec("input-0", "BYTES", (-1,))
            elif spec.datatype != "BYTES" or spec.shape not in ((-1,), (-1, 1)):
                raise ModelLoadError(
                    f"declared input '{spec.name}' is {spec.datatype} {list(spec.shape)}, but "
                    f"the model's first step, {kind}, takes one string per row: declare "
                    "datatype BYTES, shape [-1]"
                )
        if spec is None:
            assert self.matrix is not None
            return self.matrix
        if (
            spec.shape[0] != -1
            or len(spec.shape) > 2
            or (spec.datatype != "BYTES" and len(spec.shape) != 2)
        ):
            expected = "[-1] or [-1, k]" if spec.datatype == "BYTES" else "[-1, k]"
            raise ModelLoadError(
                f"declared input '{spec.name}' has shape {list(spec.shape)}; a scikit-learn "
                f"model takes {expected}, rows first"
            )
        if (
            vectorizer is None
            and len(spec.shape) == 2
            and n_features != -1
            and spec.shape[1] != n_features
        ):
            raise ModelLoadError(
                f"declared input '{spec.name}' has shape {list(spec.shape)}, but the model "
                f"was fitted on {n_features} features"
            )
        if spec.datatype == "BYTES":
            self.text = spec
            self.flat_text = vectorizer is not None or len(spec.shape) == 1
            self.matrix = None
            return spec
        others = [d for d in NUMERIC_INPUTS if d != spec.datatype]
        accepts = (spec.datatype, *others) if spec.datatype in NUMERIC_INPUTS else ()
        self.matrix = TensorSpec(spec.name, spec.datatype, spec.shape, accepts=accepts)
        return self.matrix

    def _pinned(self, path: Path) -> Path:
        """With --model-sha256: the file to load, checked against the pin before anything is
        unpickled; an audited joblib copy of a .skops model (kninfer audit) is preferred."""
        pin = self.settings.model_sha256
        if not pin:
            return path
        from kninfer.storage import sha256_of

        audited = self.model_dir / AUDITED_FILE
        if path.suffix == ".skops" and audited.is_file():
            path = model_file(self.model_dir, AUDITED_FILE)
        digest = sha256_of(path)
        if digest != pin.strip().lower():
            raise ModelLoadError(
                f"{path.name} has sha256 {digest}, not the pinned {pin} "
                "(--model-sha256); refusing to load it"
            )
        return path

    def metadata(self) -> dict[str, Any]:
        doc = super().metadata()
        if self.columns is not None:
            parameters: dict[str, Any] = {
                "columns": "one input per DataFrame column the model was fitted on "
                "(feature_names_in_), shape [-1] or [-1, 1]",
                "datatype_sources": dict(self.columns.sources),
            }
            if self.matrix is not None:
                parameters["matrix_input"] = (
                    f"also accepted: '{self.matrix.name}' FP64 {list(self.matrix.shape)}, the "
                    "columns in this order"
                )
            doc["parameters"] = parameters
        return doc

    # ---- warm-up -------------------------------------------------------------------------

    def warmup_inputs(self) -> Arrays:
        if self.text is not None:
            return self._text_warmup(self.text)
        if self.columns is None:
            if self.inputs[0].shape[1] == -1:
                logger.info("model '%s': no warm-up (the feature count is unknown)", self.name)
                return {}
            return super().warmup_inputs()
        example = self.columns.example
        self.warmup_guessed = "default" in self.columns.sources.values()
        row: Arrays = {}
        for spec in self.columns.specs:
            if example is not None and spec.name in example and len(example[spec.name]):
                value = example[spec.name][:1]
            elif spec.datatype == "BYTES":
                known = self.columns.known_strings.get(spec.name)
                if not known:
                    logger.info(
                        "model '%s': no warm-up (no known value for string column "
                        "'%s'; save an input_example.json beside the model)",
                        self.name,
                        spec.name,
                    )
                    return {}
                value = np.array(known[:1], dtype=object)
            elif spec.datatype == "BOOL":
                value = np.zeros(1, dtype=bool)
            else:
                value = np.zeros(1)
            row[spec.name] = model_column(spec.name, spec.datatype, value)
        return row

    def _text_warmup(self, spec: TensorSpec) -> Arrays:
        """A word the vectorizer learnt (its vocabulary_), else an empty text, guessed."""
        vocabulary = getattr(text_vectorizer(self.estimator), "vocabulary_", None)
        if isinstance(vocabulary, dict) and vocabulary:
            word = str(next(iter(vocabulary)))
        else:
            word, self.warmup_guessed = "", True
        shape = [1, *(1 if d == -1 else d for d in spec.shape[1:])]
        return {spec.name: np.full(shape, word, dtype=object)}

    # ---- the model file ------------------------------------------------------------------

    def _file_changed(self) -> bool:
        """Whether the memory-mapped model's file changed since load (one fstat); the first
        time it is seen, the model stops being ready for good and the log says why."""
        if self.not_ready_reason is not None:
            return True
        mapped = self.mapped_file
        if mapped is None or not mapped.changed():
            return False
        with self._change_lock:
            if self.not_ready_reason is None:
                self.not_ready_reason = (
                    f"its file {mapped.path.name} changed under the server since it was "
                    "loaded, and its arrays are memory-mapped from that file; kninfer answers "
                    "nothing from a changed file: roll out a new revision (or restart the "
                    "server) to serve the new model"
                )
                logger.error("model '%s' is not ready: %s", self.name, self.not_ready_reason)
        return True

    def _refuse_if_changed(self) -> None:
        if self._file_changed():
            raise ModelNotReady(self.name, self.not_ready_reason or "")

    def stop(self) -> None:
        super().stop()
        # Unwatched first: a closed descriptor must not read as a changed file to a late probe.
        mapped, self.mapped_file = self.mapped_file, None
        if mapped is not None:
            mapped.close()

    # ---- requests ------------------------------------------------------------------------

    async def predict(  # type: ignore[override]
        self, payload: InferRequest | dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> InferResponse | dict[str, Any]:
        # Predictor.predict refuses a model that is not ready without its reason.
        self._refuse_if_changed()
        return await super().predict(payload, headers)

    def spec_for(self, name: str, inputs_sent: int) -> TensorSpec:
        if self.matrix is not None and self.columns is not None and name == self.matrix.name:
            if inputs_sent != 1:
                raise InvalidInput(
                    f"send either '{name}' (all columns as one [N, {self.matrix.shape[1]}] "
                    "tensor) or one input per column, not both"
                )
            return self.matrix
        return super().spec_for(name, inputs_sent)

    def inputs_description(self) -> str:
        if self.columns is None:
            return super().inputs_description()
        also = f" (or '{self.matrix.name}' [N, {self.matrix.shape[1]}])" if self.matrix else ""
        return f"the columns {super().inputs_description()}{also}"

    def decode(self, request: InferRequest) -> Arrays:
        if self.text is not None:
            # V2 BYTES values arrive as bytes (JSON strings encoded, binary and gRPC as sent).
            return {
                name: strings_array(name, array) for name, array in super().decode(request).items()
            }
        if (
            self.columns is not None
            and self.matrix is not None
            and any(i.name == self.matrix.name for i in request.inputs)
        ):
            spec = self.spec_for(self.matrix.name, len(request.inputs))
            (infer_input,) = request.inputs
            array = input_array(infer_input)
            spec.check(array, infer_input.datatype)
            arrays = {spec.name: array}
            self.check_arrays(arrays)
            return arrays
        arrays = super().decode(request)
        return self._typed(arrays) if self.columns is not None else arrays

    def shape_input(self, spec: TensorSpec, array: np.ndarray) -> np.ndarray:
        if spec is self.text and self.flat_text:
            # One text per row, sent as [N] or as [N, 1] (what tritonclient users often send).
            if spec.shape == (-1,) and array.ndim == 2 and array.shape[1] == 1:
                return array.reshape(-1)
            if spec.shape == (-1, 1) and array.ndim == 1:
                return array.reshape(-1, 1)
            return array
        if self.columns is None or spec is self.matrix:
            return array
        if array.ndim == 2 and array.shape[1] == 1:
            return array.reshape(-1)  # a column may come as [-1, 1]
        if array.ndim != 1:
            raise InvalidInput(
                f"input '{spec.name}' is a column: shape must be [-1] or "
                f"[-1, 1]; got {list(array.shape)}"
            )
        return array

    def v1_arrays(self, payload: dict[str, Any]) -> Arrays:
        if self.text is not None:
            rows = v1_rows(payload)
            if rows.form == "dataframe_records":
                raise InvalidInput(
                    f"model '{self.name}' takes text, not records keyed by column "
                    'name: send {"instances": ["a text", ...]}'
                )
            # `instances`, or dataframe_split's rows; CSV cells stay text.
            return self.v1_inputs(rows.instance_list('request has no "instances" list'))
        if self.columns is None:
            return super().v1_arrays(payload)
        # Records, rows in column order (an all-numeric model's matrix rows among them) and
        # MLflow's forms; tabular_arrays refuses a missing column itself.
        arrays = tabular_arrays(payload, self.columns.specs, self.name)
        if arrays is None:
            names = ", ".join(s.name for s in self.columns.specs)
            raise InvalidInput(
                'request needs "instances": records ({"column": value, ...}) or rows of '
                f"{len(self.columns.specs)} values in column order ({names}); or MLflow's "
                '"dataframe_split" / "dataframe_records"'
            )
        return self._typed(arrays)

    def v1_inputs(self, instances: list[Any]) -> Arrays:
        if self.text is not None:
            return self._v1_text(self.text, instances)
        if has_bool(instances) and self.inputs[0].datatype != "BOOL":
            raise InvalidInput(
                f"'instances' must be numbers for input '{self.inputs[0].name}'; got true/false"
            )
        return super().v1_inputs(instances)

    def _v1_text(self, spec: TensorSpec, instances: list[Any]) -> Arrays:
        """V1 `instances` for the strings input: one text per instance (or a row of one text)
        for a text model, rows of k texts for a declared [-1, k]."""
        if self.flat_text:
            values = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in instances]
            if any(isinstance(v, list | dict) for v in values):
                raise InvalidInput(
                    f"'instances' must be a list of strings for input "
                    f"'{spec.name}' (BYTES, one text per instance)"
                )
            array = np.empty(len(values), dtype=object)
            array[:] = values
            array = strings_array(spec.name, array)
            return {spec.name: array.reshape(-1, 1) if len(spec.shape) == 2 else array}
        widths = {len(r) if isinstance(r, list) else -1 for r in instances}
        width = spec.shape[1]
        if len(widths) != 1 or -1 in widths or (width != -1 and widths != {width}):
            count = f"{width} " if width != -1 else ""
            raise InvalidInput(
                f"'instances' must be a list of rows of {count}strings for input "
                f"'{spec.name}' (BYTES)"
            )
        array = np.empty((len(instances), widths.pop()), dtype=object)
        for i, row in enumerate(instances):
            for j, value in enumerate(row):
                array[i, j] = value
        return {spec.name: strings_array(spec.name, array)}

    def _typed(self, arrays: Arrays) -> Arrays:
        """Each column as its DataFrame dtype (kninfer.protocol.tables.model_column). The
        callers check the values once: decode() before typing, V1 after (check_arrays)."""
        assert self.columns is not None
        specs = {s.name: s for s in self.columns.specs}
        return {
            name: model_column(name, specs[name].datatype, array) for name, array in arrays.items()
        }

    def validate_arrays(self, arrays: Arrays) -> None:
        if self.text is not None:
            return  # strings: decode and V1 check every value (strings_array)
        if self.columns is not None and self.matrix is not None and self.matrix.name in arrays:
            self._check_matrix(arrays[self.matrix.name])
            return
        if self.columns is not None:
            lengths = {name: len(a) for name, a in arrays.items()}
            if len(set(lengths.values())) > 1:
                detail = ", ".join(f"'{n}' has {k}" for n, k in lengths.items())
                raise InvalidInput(f"columns must have the same number of rows: {detail}")
            for name, array in arrays.items():
                if array.dtype.kind == "f":
                    self._check_floats(name, array, allow_nan=True)
            return
        (array,) = arrays.values()
        self._check_matrix(array)

    def _check_matrix(self, array: np.ndarray) -> None:
        assert self.matrix is not None  # the matrix form: the model's only or its other input
        name = self.matrix.name
        if array.ndim != 2:
            raise InvalidInput(
                f"input '{name}' must be 2-D [rows, features]; got shape {list(array.shape)}"
            )
        if array.dtype.kind == "f":
            self._check_floats(name, array, allow_nan=self._allow_nan)

    def estimator_name(self) -> str:
        """The model's class, as refusals name it."""
        return type(self.estimator).__name__

    def _check_floats(self, name: str, array: np.ndarray, allow_nan: bool) -> None:
        finite = np.isfinite(array)
        if finite.all():
            if (
                self._float32
                and array.size
                and float(np.abs(array).max()) > float(np.finfo(np.float32).max)
            ):
                raise InvalidInput(
                    f"input '{name}': a value is out of range for "
                    f"{self.estimator_name()}, which computes in float32"
                )
            return
        if not allow_nan or np.isinf(array).any():
            # scikit-learn's check_array refuses infinity for every estimator, and NaN where
            # the estimator's tags say so (allow_nan).
            what = "NaN or infinity" if not allow_nan else "infinity"
            raise InvalidInput(
                f"input '{name}' contains {what}; {self.estimator_name()} needs finite numbers"
            )

    def run(self, inputs: Arrays, outputs: Sequence[str]) -> Arrays:
        # Before: a memory-mapped file cut shorter would fault on the pages past its end.
        self._refuse_if_changed()
        features = self._features(inputs)
        result: Arrays = {}
        try:
            for name in outputs:
                method = getattr(self.estimator, name)
                result[name] = result_array(name, method(features))
        except ValueError as exc:
            # The estimator's own input validation (check_array, an unknown category with
            # handle_unknown="error", ...): the request's values, not a server fault.
            raise model_rejected(self.name, exc) from None
        # After: the file may have been written while the model computed from it.
        self._refuse_if_changed()
        for name, array in result.items():
            self._check_finite(name, array)
        return result

    def _check_finite(self, name: str, array: np.ndarray) -> None:
        """A classifier's probabilities and labels are never NaN or infinite: such an output
        means broken weights, answered as a server fault (500), never as a 200 of nulls."""
        if (
            name not in self._finite_outputs
            or array.dtype.kind not in "fc"
            or bool(np.isfinite(array).all())
        ):
            return
        what = "probabilities" if name == "predict_proba" else "class labels"
        message = (
            f"model '{self.name}' produced non-finite {what} (NaN or infinity) in "
            f"'{name}'; its weights are broken"
        )
        logger.error("%s", message)
        raise KninferError(message)

    def _features(self, inputs: Arrays) -> Any:
        if self.text is not None:
            features = inputs[self.text.name]
            return features.reshape(-1) if self.flat_text else features
        names = getattr(self.estimator, "feature_names_in_", None)
        if names is None:
            (features,) = inputs.values()
            return features
        import pandas as pd  # fitted on a DataFrame: keep its column names and order

        if self.matrix is not None and self.matrix.name in inputs:
            return pd.DataFrame(inputs[self.matrix.name], columns=names)
        return pd.DataFrame({str(n): inputs[str(n)] for n in names}, columns=names)


# The public scikit-learn estimators whose trees compare X in float32 (sklearn.tree's `DTYPE`),
# named as sklearn exports them, so subclasses match and no private module path is read.
_FLOAT32_TREES = frozenset(
    {
        "BaseDecisionTree",  # DecisionTree*, ExtraTree*
        "RandomForestClassifier",
        "RandomForestRegressor",
        "ExtraTreesClassifier",
        "ExtraTreesRegressor",
        "RandomTreesEmbedding",
        "GradientBoostingClassifier",
        "GradientBoostingRegressor",
        "IsolationForest",
    }
)


def _computes_in_float32(estimator: Any) -> bool:
    """Tree ensembles cast X to float32: a finite float64 above float32's range becomes
    infinity there. Only for a bare estimator: in a Pipeline the trees see transformed
    values."""
    return any(
        cls.__name__ in _FLOAT32_TREES and cls.__module__.startswith("sklearn.")
        for cls in type(estimator).__mro__
    )
