"""The one model contract every family implements: `load_model()` and a synchronous `run()`.

`Predictor` is a `kserve.Model`, so KServe's model registry holds it and kninfer.dataplane
calls it as KServe would. What it adds over a bare `kserve.Model`:

- model metadata stated from the loaded model (`inputs`/`outputs` as TensorSpecs);
- requests checked against those specs before the model sees them (client mistakes are 400s);
- `run()` executed on a bounded thread pool, never on the event loop. KServe 0.21 calls a
  synchronous `predict` on the loop, so one slow prediction stalls every request and the
  liveness probe (kserve#3950, kserve#5019);
- an optional adaptive batcher between `predict` and `run` (kninfer.batching);
- load and warm-up timings for the cold-start log line and metrics.

A family module subclasses this, sets `family`, and implements `load_model` and `run`; it never
touches HTTP, gRPC or CloudEvents.
"""

from __future__ import annotations

import asyncio
import functools
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
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
    WarmupFailed,
)
from kninfer.observability import tracing
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

# Inline execution (Predictor._decide_inline): warm-up calls timed after the first, and slow
# calls on the event loop before requests of that size go back to the threads.
INLINE_PROBES = 5
INLINE_STRIKES = 3
# The batch of warm-up rows repeated that is timed too, for requests of more rows than warm-up.
INLINE_WIDE = 64
# A first call above this many times the limit is not probed further (a slow model).
INLINE_FIRST_CALL_FACTOR = 20


def rows_of(arrays: Arrays) -> int:
    """The rows of a request: the first dimension of its first input (1 for a scalar)."""
    for array in arrays.values():
        return int(array.shape[0]) if array.ndim else 1
    return 0


class Predictor(DeclaresTensors, Model):
    """Base of kninfer's model families (a `kserve.Model`)."""

    family: ClassVar[str] = "base"
    # Whether adaptive batching is on when the user does not say (--batching/--no-batching).
    batching_by_default: ClassVar[bool] = False
    # Whether a fast model may run on the event loop (_decide_inline): only where a call's time
    # depends on its size alone. A pickled estimator, a torch module or an MLflow pyfunc can
    # run any code (sleep, call out), which would stall every request and probe meanwhile.
    inline_capable: ClassVar[bool] = False

    def __init__(self, name: str, model_dir: Path, settings: ServeSettings) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.settings = settings
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self.load_ms = 0.0
        self.warmup_ms = 0.0
        self.executor = ThreadPoolExecutor(
            max_workers=max(1, settings.inference_threads), thread_name_prefix=f"infer-{name}"
        )
        self._inflight = 0
        self.batcher: AdaptiveBatcher | None = None
        # Whether warmup_inputs() had to guess values (see warm_up).
        self.warmup_guessed = False
        # The most rows the model itself takes in one call, where it says (an exported program's
        # declared batch range); None: any number.
        self.max_batch_rows: int | None = None
        # Counts answered requests into the model's drift profile (`kninfer profile`); None
        # without one, and from the first request it could not count.
        self.drift: DriftMonitor | None = None
        # Requests of up to this many rows run on the event loop (_decide_inline); 0: none do.
        self.inline_max_rows = 0
        self._slow_inline_rows: list[int] = []

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
            self._decide_inline(warm, names, (time.perf_counter() - started) * 1e6)
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

    def _decide_inline(self, warm: Arrays, names: list[str], first_us: float) -> None:
        """Whether requests run on the event loop instead of an inference thread.

        Handing a call to a thread and waking the loop when it is done costs tens of
        microseconds of CPU per request (docs/performance.md#inline-models): more than a
        compiled model takes to answer. An `inline_capable` model whose warm-up call and
        INLINE_PROBES more each take under --inline-below-us runs inline, blocking the loop for
        no longer than that; `_run_inline` keeps checking. With adaptive batching on (the batcher
        is attached after load), requests still go through the batcher (`execute`).
        """
        limit = self.settings.inline_below_us
        # The first call may carry one-time set-up: a model well above the limit is not probed.
        if not self.inline_capable or limit <= 0 or first_us > INLINE_FIRST_CALL_FACTOR * limit:
            return
        rows = rows_of(warm)
        if self._slowest_us(warm, names, INLINE_PROBES) >= limit or rows == 0:
            return
        self.inline_max_rows = rows
        # A batch costs more than a row: `INLINE_WIDE` times the warm-up rows are timed too,
        # where the model takes that many (a graph exported for a fixed batch does not).
        wide_rows = rows * INLINE_WIDE
        if all(array.ndim for array in warm.values()) and (
            self.max_batch_rows is None or wide_rows <= self.max_batch_rows
        ):
            wide = {name: np.repeat(array, INLINE_WIDE, axis=0) for name, array in warm.items()}
            if self._slowest_us(wide, names, 2) < limit:
                self.inline_max_rows = wide_rows
        logger.info(
            "model '%s' runs requests of up to %d row(s) on the event loop (each call timed at "
            "start-up took under %g us; --inline-below-us 0 turns this off)",
            self.name,
            self.inline_max_rows,
            limit,
        )

    def _slowest_us(self, arrays: Arrays, names: list[str], times: int) -> float:
        slowest = 0.0
        for _ in range(times):
            started = time.perf_counter()
            self.run(arrays, names)
            slowest = max(slowest, (time.perf_counter() - started) * 1e6)
        return slowest

    def _run_inline(self, arrays: Arrays, outputs: Sequence[str]) -> Arrays:
        """`run` on the event loop, timed: after INLINE_STRIKES calls over --inline-below-us,
        requests of as many rows as the smallest of them go to the inference threads again."""
        started = time.perf_counter()
        result = self.run(arrays, outputs)
        if (time.perf_counter() - started) * 1e6 > self.settings.inline_below_us:
            self._slow_inline_rows.append(rows_of(arrays))
            if len(self._slow_inline_rows) >= INLINE_STRIKES:
                self.inline_max_rows = min(self._slow_inline_rows) - 1
                self._slow_inline_rows.clear()
                logger.warning(
                    "model '%s': %d calls took over %g us on the event loop; requests of more "
                    "than %d row(s) run on inference threads from now on",
                    self.name,
                    INLINE_STRIKES,
                    self.settings.inline_below_us,
                    self.inline_max_rows,
                )
        return result

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
        """Run the model off the event loop, through the batcher when one is configured.

        With `params` (see `request_params`) the model runs through `run_with_params`, on its
        own: rows run with different params cannot share a batch.
        """
        if self._inflight >= self.settings.max_inflight:
            raise Overloaded(
                f"{self._inflight} inferences in flight for model '{self.name}' "
                f"(limit {self.settings.max_inflight}); retry later"
            )
        # OpenTelemetry: the model call's `predict` span, recorded once the call is over (the
        # batcher records `queue` and `predict` itself); off, this one check.
        otel = tracing.OTEL
        began = time.time_ns() if otel is not None else 0
        if (
            self.inline_max_rows
            and self.batcher is None
            and not params
            and rows_of(arrays) <= self.inline_max_rows
        ):
            try:
                result: Arrays = self._run_inline(arrays, outputs)
            except Exception as exc:
                if otel is not None:
                    otel.record(tracing.PREDICT, began, error=exc)
                raise
            if otel is not None:
                otel.record(tracing.PREDICT, began)
            return self._observed(arrays, result)
        loop = asyncio.get_running_loop()
        if self.batcher is not None and not params:
            otel = None  # kninfer.batching records the spans
            work: asyncio.Future[Arrays] = asyncio.ensure_future(
                self.batcher.submit(arrays, outputs)
            )
            work.add_done_callback(lambda _: self._release())
            cancel: Any = work.cancel  # a queued request simply leaves its batch
        else:
            # The slot is freed when the thread really finishes, not when the caller stops
            # waiting: a running thread cannot be cancelled, so a timed-out request keeps
            # counting against max_inflight and memory stays bounded.
            # `work` is only ever awaited through the waiter below and only `job.cancel()` is
            # ever called, so `work` settles exactly when the thread finishes (or its queued job
            # is cancelled); releasing there costs no second cross-thread wake-up of the loop.
            job = (
                self.executor.submit(self.run_with_params, arrays, list(outputs), params)
                if params
                else self.executor.submit(self.run, arrays, list(outputs))
            )
            work = asyncio.wrap_future(job, loop=loop)
            work.add_done_callback(lambda _: self._release())
            cancel = job.cancel  # succeeds only while the job is still queued
        self._inflight += 1  # released by the callbacks above, which run on this loop later
        work.add_done_callback(_consume)
        timeout = self.settings.request_timeout_s
        # `await wait_for(shield(work), timeout)`, spelled out: one waiter future woken by the
        # work or by the timer, instead of wait_for's and shield's three futures and five
        # callbacks per request. As with shield, cancelling this task (the client went away)
        # cancels only the waiter; `work` settles when the thread really finishes.
        waiter: asyncio.Future[None] = loop.create_future()
        wake = functools.partial(_wake, waiter)
        work.add_done_callback(wake)
        timer = loop.call_later(timeout, _wake, waiter) if timeout > 0 else None
        try:
            await waiter
        except asyncio.CancelledError as exc:
            cancel()
            if otel is not None:
                otel.record(tracing.PREDICT, began, error=exc)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            work.remove_done_callback(wake)
        if not work.done():
            cancel()
            timed_out = RequestTimeout(
                f"model '{self.name}' did not answer within {timeout:g}s "
                "(KNINFER_REQUEST_TIMEOUT_S)"
            )
            if otel is not None:
                otel.record(tracing.PREDICT, began, error=timed_out)
            raise timed_out
        if otel is not None:
            otel.record(
                tracing.PREDICT, began, error=None if work.cancelled() else work.exception()
            )
        return self._observed(arrays, work.result())

    def _observed(self, arrays: Arrays, result: Arrays) -> Arrays:
        """`result`, after the drift monitor counted the request (when there is one)."""
        drift = self.drift  # the validated inputs and the computed outputs, both at hand
        if drift is not None and not drift.observe(arrays, result):
            self.drift = None  # observe() logged why; the request is answered all the same
        return result

    def _release(self) -> None:
        self._inflight -= 1

    @property
    def inflight(self) -> int:
        return self._inflight

    def stop(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        super().stop()


def _wake(waiter: asyncio.Future[None], _: Any = None) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _consume(future: asyncio.Future[Any]) -> None:
    """Mark the outcome of work nobody waits for any more (timed out) as seen, so asyncio does
    not log 'exception was never retrieved' for it."""
    if not future.cancelled():
        future.exception()


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
