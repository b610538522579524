"""How a model's calls run, whatever the family: on a bounded inference thread pool, never on the
event loop (KServe 0.21 calls a synchronous `predict` on the loop, so one slow prediction stalls
every request and the liveness probe: kserve#3950, kserve#5019), or on the loop itself for a
fast compiled model (`decide_inline`); within --max-inflight and --request-timeout-s; through
the adaptive batcher (kninfer.batching) when one is attached.

`Execution` calls the model's `run` (or `run_with_params`) and nothing else of it: the families
(kninfer.predictors) state their tensors, check requests and compute; this module decides where
and how long the computation runs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from kninfer.errors import Overloaded, RequestTimeout
from kninfer.observability import tracing
from kninfer.protocol.tensor import Arrays

if TYPE_CHECKING:
    from kninfer.batching import AdaptiveBatcher
    from kninfer.settings import ServeSettings

logger = logging.getLogger("kninfer")

# Inline execution (Execution.decide_inline): warm-up calls timed after the first, and slow
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


class Runs(Protocol):
    """What execution needs of a model: its name, settings and computation (looked up on every
    call, so a wrapper set on the instance is honoured)."""

    name: str
    settings: ServeSettings

    def run(self, inputs: Arrays, outputs: Sequence[str]) -> Arrays: ...

    def run_with_params(
        self, inputs: Arrays, outputs: Sequence[str], params: Mapping[str, Any]
    ) -> Arrays: ...


class Execution:
    """Where and within what limits one model's calls run."""

    def __init__(self, model: Runs) -> None:
        self.model = model
        settings = model.settings
        self.settings = settings
        self.executor = ThreadPoolExecutor(
            max_workers=max(1, settings.inference_threads), thread_name_prefix=f"infer-{model.name}"
        )
        self.inflight = 0
        self.batcher: AdaptiveBatcher | None = None
        # Requests of up to this many rows run on the event loop (decide_inline); 0: none do.
        self.inline_max_rows = 0
        self._slow_inline_rows: list[int] = []

    # ---- inline execution -------------------------------------------------------------------

    def decide_inline(
        self, warm: Arrays, names: list[str], first_us: float, max_batch_rows: int | None
    ) -> None:
        """Whether requests run on the event loop instead of an inference thread, decided on
        the warm-up row `warm` whose first call took `first_us`.

        Handing a call to a thread and waking the loop when it is done costs tens of
        microseconds of CPU per request (docs/performance.md#inline-models): more than a
        compiled model takes to answer. A model whose warm-up call and INLINE_PROBES more each
        take under --inline-below-us runs inline, blocking the loop for no longer than that;
        `run_inline` keeps checking. The caller asks only for a model that may run on the loop
        (`Predictor.inline_capable`). With adaptive batching on, requests still go through the
        batcher.
        """
        limit = self.settings.inline_below_us
        # The first call may carry one-time set-up: a model well above the limit is not probed.
        if limit <= 0 or first_us > INLINE_FIRST_CALL_FACTOR * limit:
            return
        rows = rows_of(warm)
        if self._slowest_us(warm, names, INLINE_PROBES) >= limit or rows == 0:
            return
        self.inline_max_rows = rows
        # A batch costs more than a row: `INLINE_WIDE` times the warm-up rows are timed too,
        # where the model takes that many (a graph exported for a fixed batch does not).
        wide_rows = rows * INLINE_WIDE
        if all(array.ndim for array in warm.values()) and (
            max_batch_rows is None or wide_rows <= max_batch_rows
        ):
            wide = {name: np.repeat(array, INLINE_WIDE, axis=0) for name, array in warm.items()}
            if self._slowest_us(wide, names, 2) < limit:
                self.inline_max_rows = wide_rows
        logger.info(
            "model '%s' runs requests of up to %d row(s) on the event loop (each call timed at "
            "start-up took under %g us; --inline-below-us 0 turns this off)",
            self.model.name,
            self.inline_max_rows,
            limit,
        )

    def _slowest_us(self, arrays: Arrays, names: list[str], times: int) -> float:
        slowest = 0.0
        for _ in range(times):
            started = time.perf_counter()
            self.model.run(arrays, names)
            slowest = max(slowest, (time.perf_counter() - started) * 1e6)
        return slowest

    def run_inline(self, arrays: Arrays, outputs: Sequence[str]) -> Arrays:
        """`run` on the event loop, timed: after INLINE_STRIKES calls over --inline-below-us,
        requests of as many rows as the smallest of them go to the inference threads again."""
        started = time.perf_counter()
        result = self.model.run(arrays, outputs)
        if (time.perf_counter() - started) * 1e6 > self.settings.inline_below_us:
            self._slow_inline_rows.append(rows_of(arrays))
            if len(self._slow_inline_rows) >= INLINE_STRIKES:
                self.inline_max_rows = min(self._slow_inline_rows) - 1
                self._slow_inline_rows.clear()
                logger.warning(
                    "model '%s': %d calls took over %g us on the event loop; requests of more "
                    "than %d row(s) run on inference threads from now on",
                    self.model.name,
                    INLINE_STRIKES,
                    self.settings.inline_below_us,
                    self.inline_max_rows,
                )
        return result

    # ---- a request's call ---------------------------------------------------------------------

    async def execute(
        self, arrays: Arrays, outputs: Sequence[str], params: Mapping[str, Any] | None = None
    ) -> Arrays:
        """Run the model off the event loop (or inline), through the batcher when one is
        attached. With `params` the model runs through `run_with_params`, on its own: rows run
        with different params cannot share a batch."""
        model, settings = self.model, self.settings
        if self.inflight >= settings.max_inflight:
            raise Overloaded(
                f"{self.inflight} inferences in flight for model '{model.name}' "
                f"(limit {settings.max_inflight}); retry later"
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
                result: Arrays = self.run_inline(arrays, outputs)
            except Exception as exc:
                if otel is not None:
                    otel.record(tracing.PREDICT, began, error=exc)
                raise
            if otel is not None:
                otel.record(tracing.PREDICT, began)
            return result
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
                self.executor.submit(model.run_with_params, arrays, list(outputs), params)
                if params
                else self.executor.submit(model.run, arrays, list(outputs))
            )
            work = asyncio.wrap_future(job, loop=loop)
            work.add_done_callback(lambda _: self._release())
            cancel = job.cancel  # succeeds only while the job is still queued
        self.inflight += 1  # released by the callbacks above, which run on this loop later
        work.add_done_callback(_consume)
        timeout = settings.request_timeout_s
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
                f"model '{model.name}' did not answer within {timeout:g}s "
                "(KNINFER_REQUEST_TIMEOUT_S)"
            )
            if otel is not None:
                otel.record(tracing.PREDICT, began, error=timed_out)
            raise timed_out
        if otel is not None:
            otel.record(
                tracing.PREDICT, began, error=None if work.cancelled() else work.exception()
            )
        return work.result()

    def _release(self) -> None:
        self.inflight -= 1

    def stop(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def _wake(waiter: asyncio.Future[None], _: Any = None) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _consume(future: asyncio.Future[Any]) -> None:
    """Mark the outcome of work nobody waits for any more (timed out) as seen, so asyncio does
    not log 'exception was never retrieved' for it."""
    if not future.cancelled():
        future.exception()
