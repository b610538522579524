"""The one model contract every family implements: `load_model()` and a synchronous `run()`.

`Predictor` is a `kserve.Model`, so KServe's model registry holds it and kninfer.dataplane
calls it as KServe would. What it adds over a bare `kserve.Model`:

- model metadata stated from the loaded model (`inputs`/`outputs` as TensorSpecs);
- requests checked against those specs before the model sees them (client mistakes are 400s);
- `run()` executed by kninfer.execution, which knows no family: on a bounded thread pool, never
  on the event loop (or on it, for a fast compiled model), within the in-flight limit and the
  request timeout, through the optional adaptive batcher (kninfer.batching);
- load and warm-up timings for the cold-start log line and metrics.

A family module subclasses this, sets `family`, and implements `load_model` and `run`; it never
touches HTTP, gRPC or CloudEvents.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from kserve import InferRequest, InferResponse, Model
from kserve.model import InferenceVerb

from kninfer._compat.model_call import lean_call, takes_lean_path
from kninfer.errors import (
    EMPTY_BATCH,
    InvalidInput,
    ModelNotReady,
    PayloadTooLarge,
    WarmupFailed,
)
from kninfer.execution import Execution
from kninfer.protocol.tensor import (
    V2_TO_NUMPY,
    Arrays,
    DeclaresTensors,
    TensorSpec,
    v2_datatype_of,
)
from kninfer.protocol.v1 import named_tensors, v1_rows
from kninfer.protocol.v2 import input_array, to_output

if TYPE_CHECKING:
    from kninfer.batching import AdaptiveBatcher
    from kninfer.observability.drift import DriftMonitor
    from kninfer.settings import ServeSettings

logger = logging.getLogger("kninfer")


class Predictor(DeclaresTensors, Model):
    """Base of kninfer's model families (a `kserve.Model`)."""

    family: ClassVar[str] = "base"
    # Whether adaptive batching is on when the user does not say (--batching/--no-batching).
    batching_by_default: ClassVar[bool] = False
    # Whether a fast model may run on the event loop (Execution.decide_inline): only where a
    # call's time depends on its size alone. A pickled estimator, a torch module or an MLflow
    # pyfunc can run any code (sleep, call out), which would stall every request and probe
    # meanwhile.
    inline_capable: ClassVar[bool] = False

    def __init__(self, name: str, model_dir: Path, settings: ServeSettings) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.settings = settings
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self.load_ms = 0.0
        self.warmup_ms = 0.0
        # Where and within what limits `run` executes (kninfer.execution).
        self.execution = Execution(self)
        # Whether warmup_inputs() had to guess values (see warm_up).
        self.warmup_guessed = False
        # The most rows the model itself takes in one call, where it says (an exported program's
        # declared batch range); None: any number.
        self.max_batch_rows: int | None = None
        # Counts answered requests into the model's drift profile (`kninfer profile`); None
        # without one, and from the first request it could not count.
        self.drift: DriftMonitor | None = None

    def batch_cap(self) -> int:
        """The largest batch to build for this model: --max-batch-size, or fewer where the
        model takes fewer (`max_batch_rows`)."""
        cap = self.settings.max_batch_size
        return cap if self.max_batch_rows is None else min(cap, self.max_batch_rows)

    # ---- the family contract -------------------------------------------------------------

    @abstractmethod
    def load_model(self) -> None:
        """Load from `self.model_dir` and fill `self.inputs` / `self.outputs`."""

    @abstractmethod
    def run(self, inputs: Arrays, outputs: Sequence[str]) -> Arrays:
        """Compute the named `outputs` for validated `inputs`. Runs on a worker thread."""

    def run_with_params(
        self, inputs: Arrays, outputs: Sequence[str], params: Mapping[str, Any]
    ) -> Arrays:
        """`run` with the request's inference parameters (`request_params`); only families
        that take parameters (MLflow) override both."""
        return self.run(inputs, outputs)

    def warmup_inputs(self) -> Arrays:
        """One row of zeros per declared input: enough to page in weights and JIT paths."""
        arrays: Arrays = {}
        for spec in self.inputs:
            if spec.optional:
                continue
            shape = [1 if d == -1 else d for d in spec.shape]
            if spec.datatype == "BYTES":
                arrays[spec.name] = np.full(shape, b"", dtype=object)
            else:
                arrays[spec.name] = np.zeros(shape, dtype=V2_TO_NUMPY[spec.datatype])
        return arrays

    def v1_arrays(self, payload: dict[str, Any]) -> Arrays:
        """The arrays of a V1 body (`instances` or `inputs`, KServe V1 protocol); a family with
        other V1 forms (records, MLflow's dataframe_split) overrides this."""
        rows = v1_rows(payload)
        if rows.form == "instances" and isinstance(rows.rows, dict) and len(self.inputs) == 1:
            # Named tensors, columnar (`{"inputs": {name: batch}}`): the one input's batch.
            spec = self.inputs[0]
            return self.v1_inputs(named_tensors(rows.rows, [spec.name])[spec.name])
        if rows.form == "dataframe_records":
            raise InvalidInput(
                f"model '{self.name}' takes rows of numbers, not records keyed by column name: "
                'send "instances" or "dataframe_split"'
            )
        instances = rows.instance_list('request has no "instances" list')
        if rows.csv:  # MLflow's text/csv: rows in column order, cells as text
            instances = [[_csv_number(v) for v in row] for row in instances]
        return self.v1_inputs(instances)

    def v1_inputs(self, instances: list[Any]) -> Arrays:
        """V1 `instances` are rows of the single (first) declared input."""
        spec = self.inputs[0]
        target = np.dtype(V2_TO_NUMPY[spec.datatype])
        try:
            # Floats are read as float64 first: a direct cast to FP32 turns 1e39 into infinity.
            array = np.asarray(instances, dtype=np.float64 if target.kind == "f" else target)
        except (ValueError, TypeError):
            # The width a row must have, never the -1 wildcard of a free dimension.
            width = spec.shape[-1] if len(spec.shape) > 1 else None
            what = (
                "numbers"
                if width is None
                else "rows of numbers"
                if width == -1
                else f"rows of {width} numbers"
            )
            raise InvalidInput(
                f"'instances' must be a list of {what} for input '{spec.name}'"
            ) from None
        if target.kind == "f" and target.itemsize < 8:
            finite = np.isfinite(array)
            if bool((np.abs(array[finite]) > float(np.finfo(target).max)).any()):
                raise InvalidInput(
                    f"input '{spec.name}': a value is out of range for {spec.datatype}"
                )
            array = array.astype(target)
        if array.ndim == 1 and len(spec.shape) == 2 and array.size:
            raise InvalidInput(
                f"'instances' must be a list of rows (shape {list(spec.shape)}); got a flat list"
            )
        spec.check(array, spec.datatype)
        return {spec.name: array}

    def validate_arrays(self, arrays: Arrays) -> None:
        """Family hook for value checks (NaN where not allowed, ranges). Raise InvalidInput."""

    # ---- kserve.Model ----------------------------------------------------------------------

    def load(self) -> bool:
        started = time.perf_counter()
        self.load_model()
        self.version = self.settings.model_version or self.version_of_model()
        self.load_ms = (time.perf_counter() - started) * 1000
        from kninfer.observability.drift import load_monitor  # a stat when there is no profile

        self.drift = load_monitor(
            self.model_dir,
            self.name,
            self.version,
            [s.name for s in self.inputs],
            [s.name for s in self.outputs],
        )
        if self.settings.warmup:
            started = time.perf_counter()
            self.warm_up()
            self.warmup_ms = (time.perf_counter() - started) * 1000
        self.ready = True
        return self.ready

    def version_of_model(self) -> str:
        """The version to report when --model-version says none: a digest of the model
        directory's files (kninfer.storage.directory_digest). A family with a version of its
        own (an MLflow run id) overrides this."""
        from kninfer.storage import directory_digest

        return directory_digest(self.model_dir)

    def warm_up(self) -> None:
        """One prediction on `warmup_inputs()` before the ports open.

        A row built from what the model states (its declared specs, its input example, its
        fitted categories) that fails means the model is broken: start-up fails with
        WarmupFailed, so the revision never turns ready and a rollout stops there. A row with
        guessed values (`warmup_guessed`) that fails proves nothing: the model serves without
        warm-up and the log says why.
        """
        warm = self.warmup_inputs()
        if not warm:
            return
        names = [spec.name for spec in self.outputs]
        try:
            started = time.perf_counter()
            self.run(warm, names)
            if self.inline_capable:
                self.execution.decide_inline(
                    warm, names, (time.perf_counter() - started) * 1e6, self.max_batch_rows
                )
        except Exception as exc:
            if not self.warmup_guessed:
                raise WarmupFailed(
                    f"{type(exc).__name__}: {exc} (--no-warmup serves without a warm-up)"
                ) from exc
            logger.warning(
                "model '%s': the warm-up prediction on a guessed row failed (%s: "
                "%s); serving without warm-up (declare the inputs in kninfer.yaml "
                "or save an input_example.json beside the model)",
                self.name,
                type(exc).__name__,
                exc,
            )

    async def __call__(  # type: ignore[override]
        self,
        body: InferRequest | dict[str, Any],
        headers: dict[str, str] | None = None,
        verb: InferenceVerb = InferenceVerb.PREDICT,
    ) -> tuple[InferResponse | dict[str, Any], dict[str, str]]:
        """`kserve.Model.__call__`, by the lean path where it applies (kninfer._compat)."""
        if takes_lean_path(self, verb):
            return await lean_call(self, body, headers)
        return await super().__call__(body, headers, verb)  # type: ignore[no-any-return]

    @property
    def platform(self) -> str:
        return f"kninfer-{self.family}"

    async def predict(  # type: ignore[override]
        self, payload: InferRequest | dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> InferResponse | dict[str, Any]:
        if not self.ready:
            raise ModelNotReady(self.name)
        if isinstance(payload, dict):
            if payload.get("params") is not None:
                raise InvalidInput(f"model '{self.name}' takes no params")
            arrays = self.v1_arrays(payload)
            for spec in self.inputs:
                if spec.name in arrays:
                    spec.check(arrays[spec.name], spec.datatype)
            self.check_arrays(arrays)
            result = await self.execute(arrays, [self.outputs[0].name])
            return {"predictions": result[self.outputs[0].name].tolist()}
        arrays = self.decode(payload)
        names = self.requested_outputs(payload)
        result = await self.execute(arrays, names, self.request_params(payload))
        # No names: the model's outputs are only known once it has run (an MLflow model without
        # an output signature); answer with everything it computed.
        outputs = [to_output(name, result[name]) for name in (names or list(result))]
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            model_version=self.version or None,
            infer_outputs=outputs,
            use_binary_outputs=payload.use_binary_outputs,
        )

    # ---- request checking and execution ---------------------------------------------------

    def decode(self, request: InferRequest) -> Arrays:
        """Numpy arrays for each declared input, checked against its spec."""
        arrays: Arrays = {}
        for infer_input in request.inputs:
            spec = self.spec_for(infer_input.name, len(request.inputs))
            array = self.shape_input(spec, input_array(infer_input))
            spec.check(array, infer_input.datatype)
            arrays[spec.name] = array
        missing = [s.name for s in self.inputs if s.name not in arrays and not s.optional]
        if missing:
            raise InvalidInput(f"missing input(s) {', '.join(missing)} for model '{self.name}'")
        self.check_arrays(arrays)
        return arrays

    def spec_for(self, name: str, inputs_sent: int) -> TensorSpec:
        """The declared input a request tensor named `name` feeds."""
        # An unknown name is refused even for a single-input model (KServe's and MLServer's
        # sklearn runtimes take any name there): a tensor sent under the wrong name is most
        # often meant for another model or version, and answering it hides the mistake.
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise InvalidInput(
            f"unknown input '{name}'; model '{self.name}' takes {self.inputs_description()}"
        )

    def inputs_description(self) -> str:
        return ", ".join(spec.name for spec in self.inputs)

    def shape_input(self, spec: TensorSpec, array: np.ndarray) -> np.ndarray:
        """Family hook: reshape a request tensor before it is checked against `spec`."""
        return array

    def check_arrays(self, arrays: Arrays) -> None:
        settings = self.settings
        for name, array in arrays.items():
            if array.ndim and array.shape[0] == 0:
                raise InvalidInput(f"input '{name}' has no rows; {EMPTY_BATCH}")
            if array.size > settings.max_tensor_elements:
                raise PayloadTooLarge(
                    f"input '{name}' has {array.size} elements; the limit is "
                    f"{settings.max_tensor_elements} (KNINFER_MAX_TENSOR_ELEMENTS)"
                )
            if array.ndim and array.shape[0] > settings.max_batch_rows:
                raise PayloadTooLarge(
                    f"input '{name}' has {array.shape[0]} rows; the limit is "
                    f"{settings.max_batch_rows} (KNINFER_MAX_BATCH_ROWS)"
                )
        self.validate_arrays(arrays)

    def request_params(self, request: InferRequest) -> dict[str, Any] | None:
        """Family hook: inference parameters for `run` taken from the request's `parameters`
        (MLflow's params). None: `run` is called with inputs and outputs only."""
        return None

    def requested_outputs(self, request: InferRequest) -> list[str]:
        declared = [spec.name for spec in self.outputs]
        if not request.request_outputs:
            return [spec.name for spec in self.outputs if not spec.optional]
        names = [o.name for o in request.request_outputs]
        unknown = [n for n in names if n not in declared]
        if unknown:
            raise InvalidInput(
                f"unknown output(s) {', '.join(unknown)}; model '{self.name}' has "
                f"{', '.join(declared)}"
            )
        return names

    async def execute(
        self, arrays: Arrays, outputs: Sequence[str], params: Mapping[str, Any] | None = None
    ) -> Arrays:
        """Run the model (kninfer.execution), then count the answered request into the drift
        profile. With `params` (see `request_params`) it runs through `run_with_params`."""
        return self._observed(arrays, await self.execution.execute(arrays, outputs, params))

    def _observed(self, arrays: Arrays, result: Arrays) -> Arrays:
        """`result`, after the drift monitor counted the request (when there is one)."""
        drift = self.drift  # the validated inputs and the computed outputs, both at hand
        if drift is not None and not drift.observe(arrays, result):
            self.drift = None  # observe() logged why; the request is answered all the same
        return result

    # ---- execution, as the server and the batcher see it ------------------------------------

    @property
    def executor(self) -> ThreadPoolExecutor:
        return self.execution.executor

    @property
    def batcher(self) -> AdaptiveBatcher | None:
        return self.execution.batcher

    @batcher.setter
    def batcher(self, batcher: AdaptiveBatcher | None) -> None:
        self.execution.batcher = batcher

    @property
    def inline_max_rows(self) -> int:
        """Requests of up to this many rows run on the event loop; 0: none do."""
        return self.execution.inline_max_rows

    @property
    def inflight(self) -> int:
        return self.execution.inflight

    def stop(self) -> None:
        self.execution.stop()
        super().stop()


def _csv_number(cell: Any) -> Any:
    """A CSV cell for a numeric tensor: a number if it reads as one (else left for the tensor
    check to refuse)."""
    try:
        return float(cell) if str(cell).strip() else float("nan")
    except ValueError:
        return cell


def model_rejected(model_name: str, exc: BaseException) -> InvalidInput:
    """The 400 for an error the model's own input validation raised (scikit-learn's
    check_array ValueError, a torch shape error caused by the request): the request's fault,
    so not a 500 that would invite retries."""
    logger.info("model '%s' rejected a request: %s", model_name, exc)
    reason = str(exc).strip() or type(exc).__name__
    if len(reason) > 1000:
        reason = reason[:1000] + "..."
    return InvalidInput(f"model rejected the input: {reason}")


def result_array(name: str, value: Any) -> np.ndarray:
    """Normalise a model's output into a numpy array with a V2 datatype."""
    array = np.asarray(value)
    if array.dtype.kind in "US":
        array = array.astype(object)
    v2_datatype_of(array)  # raises for dtypes V2 cannot carry
    return array
