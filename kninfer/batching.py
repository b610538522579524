"""Adaptive batching in front of `Predictor.run`: concurrent requests become one model call.

KServe 0.21 has no in-process batcher; its Go agent batches V1 `instances` only, rewrites the reply
and drops per-request headers (kserve#2275). MLServer's adaptive batcher has answered one caller
with everybody's rows (MLServer#1306) and ignored requested outputs (MLServer#514). This one:

- works on already-decoded, already-validated numpy arrays, so it serves V2 REST, gRPC, V1 and
  CloudEvents alike, and a malformed request is refused (400) before it can join a batch;
- groups only requests that can be concatenated: the same input names, dtypes and trailing shapes
  and the same requested outputs (the group key);
- waits at most `max_latency_ms` after a group's oldest request, or until `max_batch_size` rows
  are queued, then concatenates along dim 0, runs `predictor.run` once on the predictor's thread
  pool and gives each caller exactly its own rows back (slices by row offset);
- adapts: at most `predictor.executor`'s thread count batches run at once; while they run, new
  requests queue, so under load batches grow towards `max_batch_size` and when idle a request
  waits no more than `max_latency_ms`;
- isolates failures: if a batched call raises, or returns outputs whose first dimension is not the
  batch's row count, each request in it is run again on its own, so only a request that fails by
  itself gets an error;
- survives cancellation: a caller that goes away (client disconnect, timeout) only drops its own
  future; a cancelled request still queued is left out of the next batch.

Batch sizes (rows per model call) go to the Prometheus histogram `kninfer_batch_size{model}` and to
any callables in `on_batch`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from kninfer.observability import tracing
from kninfer.protocol.tensor import Arrays

if TYPE_CHECKING:
    from kninfer.predictors.base import Predictor

logger = logging.getLogger("kninfer")


@dataclass
class _Pending:
    arrays: Arrays
    outputs: list[str]
    rows: int
    future: asyncio.Future[Arrays]
    arrived: float = field(default_factory=time.monotonic)
    # When its model call began (time.monotonic()), kept only while tracing is on.
    dispatched: float = 0.0
    batch_rows: int = 0  # rows in its model call, likewise


def group_key(arrays: Arrays, outputs: Sequence[str]) -> Hashable | None:
    """What must match for two requests to share a model call; None when the request cannot be
    batched (a scalar input, or inputs that disagree on their row count)."""
    rows = {a.shape[0] if a.ndim else None for a in arrays.values()}
    if len(rows) != 1 or None in rows:
        return None
    signature = tuple(
        (name, array.dtype.str, array.shape[1:]) for name, array in sorted(arrays.items())
    )
    return signature, tuple(outputs)


def _rows_of(arrays: Arrays) -> int:
    return int(next(iter(arrays.values())).shape[0])


class AdaptiveBatcher:
    """Concatenate concurrent requests to one predictor along dim 0 (see module docstring)."""

    def __init__(self, predictor: Predictor, max_batch_size: int, max_latency_ms: float) -> None:
        if max_batch_size < 1:
            raise ValueError("--max-batch-size must be at least 1")
        if max_latency_ms < 0:
            raise ValueError("--max-latency-ms must not be negative")
        self.predictor = predictor
        self.max_batch_size = max_batch_size
        self.max_latency_s = max_latency_ms / 1000.0
        # Batches in flight at once: the predictor's thread pool size (--inference-threads).
        self.max_concurrent = max(1, predictor.settings.inference_threads)
        self.on_batch: list[Callable[[int, int], None]] = []  # (rows, requests)
        from kninfer.observability.prometheus import batch_size_histogram

        self._histogram = batch_size_histogram().labels(model=predictor.name)
        self._queues: dict[Hashable, deque[_Pending]] = {}
        self._wakeup: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    # ---- public ------------------------------------------------------------------------------

    async def submit(self, arrays: Arrays, outputs: Sequence[str]) -> Arrays:
        """The named outputs for `arrays` (validated by the caller), computed in a shared batch."""
        key = group_key(arrays, outputs)
        rows = _rows_of(arrays) if key is not None else 1
        otel = tracing.OTEL
        if key is None or rows > self.max_batch_size:
            # Too big to share or not concatenable: run it alone, still off the event loop.
            if otel is not None:
                began = time.time_ns()
                try:
                    result = await self._run_alone(arrays, list(outputs), rows)
                except BaseException as exc:
                    otel.record(tracing.PREDICT, began, error=exc)
                    raise
                otel.record(tracing.PREDICT, began, attributes={"kninfer.batch_rows": rows})
                return result
            return await self._run_alone(arrays, list(outputs), rows)
        self._ensure_started()
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        pending = _Pending(arrays, list(outputs), rows, loop.create_future())
        self._queues.setdefault(key, deque()).append(pending)
        self._wakeup.set()
        # Cancelling this await cancels only `pending.future`; the batch it may be part of goes on.
        if otel is None:
            return await pending.future
        return await self._traced(pending)

    async def _traced(self, pending: _Pending) -> Arrays:
        """Await a queued request, then record its `queue` span (arrival to the start of its
        model call) and its `predict` span (the model call; OpenTelemetry, tracing on)."""
        otel = tracing.OTEL
        wall, mono = time.time_ns(), time.monotonic()
        arrived = wall - int((mono - pending.arrived) * 1e9)
        error: BaseException | None = None
        try:
            return await pending.future
        except BaseException as exc:
            error = exc
            raise
        finally:
            if otel is not None:
                now = time.time_ns()
                dispatched = (
                    arrived + int((pending.dispatched - pending.arrived) * 1e9)
                    if pending.dispatched
                    else now
                )
                otel.record(
                    tracing.QUEUE,
                    arrived,
                    dispatched,
                    error=error if not pending.dispatched else None,
                )
                if pending.dispatched:
                    otel.record(
                        tracing.PREDICT,
                        dispatched,
                        now,
                        error=error,
                        attributes={"kninfer.batch_rows": pending.batch_rows},
                    )

    async def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
        for task in list(self._running):
            await asyncio.gather(task, return_exceptions=True)

    # ---- dispatch ----------------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            # Created lazily: the batcher is built before the server's event loop exists.
            self._wakeup = asyncio.Event()
            self._slots = asyncio.Semaphore(self.max_concurrent)
            self._dispatcher = asyncio.create_task(self._dispatch(), name="kninfer-batcher")

    def _oldest_key(self) -> Hashable | None:
        oldest: tuple[float, Hashable] | None = None
        for key, queue in list(self._queues.items()):
            while queue and queue[0].future.done():  # cancelled while queued
                queue.popleft()
            if not queue:
                del self._queues[key]
                continue
            if oldest is None or queue[0].arrived < oldest[0]:
                oldest = (queue[0].arrived, key)
        return None if oldest is None else oldest[1]

    def _queued_rows(self, key: Hashable) -> int:
        return sum(p.rows for p in self._queues.get(key, ()) if not p.future.done())

    async def _dispatch(self) -> None:
        while True:
            try:
                await self._dispatch_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not leave callers waiting forever
                logger.exception("adaptive batcher failed; failing the queued requests")
                for queue in self._queues.values():
                    for pending in queue:
                        if not pending.future.done():
                            pending.future.set_exception(
                                RuntimeError("adaptive batcher failed; see the server log")
                            )
                self._queues.clear()

    async def _dispatch_once(self) -> None:
        """Wait for work and a free slot, gather one batch, start it."""
        assert self._wakeup is not None and self._slots is not None
        if self._oldest_key() is None:
            self._wakeup.clear()
            await self._wakeup.wait()
            return
        # A free execution slot first: while every slot is busy, requests keep queueing, which
        # is what makes batches grow under load.
        await self._slots.acquire()
        key = self._oldest_key()
        batch: list[_Pending] = []
        try:
            if key is None:
                return
            deadline = self._queues[key][0].arrived + self.max_latency_s
            while self._queued_rows(key) < self.max_batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take(key)
        finally:
            if not batch:
                self._slots.release()  # nothing started: give the slot back
        if batch:
            task = asyncio.create_task(self._run_batch(batch, self._slots))  # releases the slot
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _take(self, key: Hashable) -> list[_Pending]:
        """Oldest-first requests of `key` totalling at most max_batch_size rows."""
        queue = self._queues.get(key)
        batch: list[_Pending] = []
        rows = 0
        while queue:
            head = queue[0]
            if head.future.done():
                queue.popleft()
                continue
            if batch and rows + head.rows > self.max_batch_size:
                break
            batch.append(queue.popleft())
            rows += head.rows
        if queue is not None and not queue:
            self._queues.pop(key, None)
        return batch

    # ---- execution ---------------------------------------------------------------------------

    async def _run_alone(self, arrays: Arrays, outputs: list[str], rows: int) -> Arrays:
        loop = asyncio.get_running_loop()
        result: Arrays = await loop.run_in_executor(
            self.predictor.executor, self.predictor.run, arrays, outputs
        )
        self._observe(rows, 1)
        return result

    async def _run_batch(self, batch: list[_Pending], slots: asyncio.Semaphore) -> None:
        if tracing.OTEL is not None:  # the start of the model call, for each `queue` span
            now = time.monotonic()
            total = sum(p.rows for p in batch)
            for pending in batch:
                pending.dispatched = now
                pending.batch_rows = total
        try:
            if len(batch) == 1:
                await self._run_single(batch[0])
                return
            names = list(batch[0].arrays)
            merged = {n: np.concatenate([p.arrays[n] for p in batch], axis=0) for n in names}
            total = sum(p.rows for p in batch)
            loop = asyncio.get_running_loop()
            try:
                result = await loop.run_in_executor(
                    self.predictor.executor, self.predictor.run, merged, batch[0].outputs
                )
            except Exception as exc:
                logger.info(
                    "batched call of %d requests failed (%s: %s); running each alone",
                    len(batch),
                    type(exc).__name__,
                    exc,
                )
                await self._run_each(batch)
                return
            if any(np.ndim(v) == 0 or np.shape(v)[0] != total for v in result.values()):
                logger.warning(
                    "model '%s' returned outputs without one row per input row; "
                    "running the batched requests one by one",
                    self.predictor.name,
                )
                await self._run_each(batch)
                return
            self._observe(total, len(batch))
            start = 0
            for pending in batch:
                end = start + pending.rows
                if not pending.future.done():
                    pending.future.set_result({k: v[start:end] for k, v in result.items()})
                start = end
        except BaseException as exc:  # never leave a caller waiting forever
            for pending in batch:
                if not pending.future.done():
                    if isinstance(exc, Exception):
                        pending.future.set_exception(exc)
                    else:
                        pending.future.cancel()
            if not isinstance(exc, Exception):
                raise
        finally:
            slots.release()

    async def _run_each(self, batch: list[_Pending]) -> None:
        await asyncio.gather(*(self._run_single(p) for p in batch))

    async def _run_single(self, pending: _Pending) -> None:
        if pending.future.done():
            return
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(
                self.predictor.executor, self.predictor.run, pending.arrays, pending.outputs
            )
        except Exception as exc:
            if not pending.future.done():
                pending.future.set_exception(exc)
            return
        self._observe(pending.rows, 1)
        if not pending.future.done():
            pending.future.set_result(result)

    def _observe(self, rows: int, requests: int) -> None:
        self._histogram.observe(rows)
        for callback in self.on_batch:
            callback(rows, requests)
