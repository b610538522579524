"""The redelivery cache. Knative Eventing delivers at least once (knative/specs, data-plane.md
"Event Acknowledgement and Delivery Retry"), so a redelivered event (same `source` + `id`) gets
the reply it got the first time without running the model again.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from kninfer.cloudevents.binding import InboundEvent, Reply

_ENTRY_OVERHEAD = 256  # bytes per cache entry beyond the reply itself (key, bookkeeping)


@dataclass
class _Entry:
    reply: Reply
    expires: float
    size: int


@dataclass
class DedupeCache:
    """Replies by event key, bounded in entries, bytes and age; duplicates in flight share one run.

    Knative Eventing delivers at least once and says subscribers must tolerate duplicates
    (data-plane.md, "Event Acknowledgement and Delivery Retry"); CloudEvents 1.0 says `source` +
    `id` identify an event. Only successful replies are kept: a failed run (400 or a retryable
    503/429) is forgotten, so Knative's retry runs the model again. One process, one asyncio loop:
    the cache is per replica.
    """

    max_entries: int
    ttl_s: float
    max_bytes: int
    clock: Callable[[], float] = time.monotonic
    _entries: OrderedDict[tuple[str, ...], _Entry] = field(default_factory=OrderedDict)
    _inflight: dict[tuple[str, ...], asyncio.Future[Reply]] = field(default_factory=dict)
    _bytes: int = 0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.ttl_s > 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, key: tuple[str, ...]) -> Reply | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self.clock():
            self._drop(key)
            return None
        return entry.reply

    async def run(
        self, key: tuple[str, ...], compute: Callable[[], Awaitable[Reply]]
    ) -> tuple[Reply, bool]:
        """(reply, replayed): the stored reply, the in-flight run's, or a new run's."""
        if not self.enabled:
            return await compute(), False
        cached = self.get(key)
        if cached is not None:
            return cached, True
        pending = self._inflight.get(key)
        if pending is not None:
            # shield: a waiter whose client went away must not cancel the shared run.
            return await asyncio.shield(pending), True
        task = asyncio.ensure_future(compute())
        self._inflight[key] = task
        task.add_done_callback(lambda done: self._settle(key, done))
        return await asyncio.shield(task), False

    def _settle(self, key: tuple[str, ...], task: asyncio.Future[Reply]) -> None:
        self._inflight.pop(key, None)
        if task.cancelled() or task.exception() is not None:
            return
        self.put(key, task.result())

    def put(self, key: tuple[str, ...], reply: Reply) -> None:
        size = reply.size + _ENTRY_OVERHEAD
        if size > self.max_bytes:
            return  # would evict everything else; the duplicate will simply run again
        if key in self._entries:
            self._drop(key)
        self._entries[key] = _Entry(reply, self.clock() + self.ttl_s, size)
        self._bytes += size
        self._evict()

    def _drop(self, key: tuple[str, ...]) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.size

    def _evict(self) -> None:
        # Insertion order is expiry order (one TTL), so the oldest entries go first.
        now = self.clock()
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if (
                entry.expires <= now
                or len(self._entries) > self.max_entries
                or self._bytes > self.max_bytes
            ):
                self._drop(key)
            else:
                break


def event_key(event: InboundEvent, model_name: str) -> tuple[str, str, str]:
    return (model_name, event.source, event.id)
