"""A de-duplicating, rate-limited work queue of keys, and the worker pool that drains it.

Why keys and not events: controllers reconcile *state*. Ten events for one object while a worker is
busy must collapse into one more reconcile of that object's latest state, and two workers must never
reconcile the same object at once (they would race on the same host object). The queue guarantees
both, as client-go's workqueue does:

* a key is queued at most once (`dirty` set);
* a key being processed is not handed to another worker; if it is re-added meanwhile it is parked and
  queued again by `done()`, so the change that caused the re-add is not lost;
* failures back off per key (exponential from 5 ms to 60 s) and overall (a token bucket), so one
  broken object cannot spin a worker and a broken API server is not hammered by every key at once.

Delays use the loop's timers (`call_later`), not tasks: a delayed key costs one timer handle, all of
which `shutdown()` cancels, so nothing outlives the queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from syncer.kube import metrics
from syncer.kube.client import TokenBucket

__all__ = ["QueueShutDown", "WorkQueue", "run_workers"]

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


class QueueShutDown(Exception):
    """`get()` on a queue that was shut down and has nothing left to hand out."""


class WorkQueue(Generic[K]):
    """Keys to reconcile, each handed to at most one worker at a time.

    `name` labels the metrics (bounded: one per controller). `base_delay`/`max_delay` shape the
    per-key back-off of `add_rate_limited`; `qps`/`burst` the overall bucket (client-go's defaults:
    10 per second, bursts of 100).
    """

    def __init__(
        self,
        name: str,
        *,
        base_delay: float = 0.005,
        max_delay: float = 60.0,
        qps: float = 10.0,
        burst: int = 100,
    ) -> None:
        self.name = name
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._bucket = TokenBucket(qps, burst)
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()  # queued, or re-added while processing
        self._processing: set[K] = set()
        self._enqueued_at: dict[K, float] = {}
        self._failures: dict[K, int] = {}
        self._timers: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._getters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False
        self._depth = metrics.WORKQUEUE_DEPTH.labels(name)
        self._adds = metrics.WORKQUEUE_ADDS.labels(name)
        self._retries = metrics.WORKQUEUE_RETRIES.labels(name)
        self._queue_duration = metrics.WORKQUEUE_QUEUE_DURATION.labels(name)

    def __len__(self) -> int:
        """Keys waiting for a worker (not those being processed or delayed)."""
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, key: K) -> None:
        """Queue `key` unless it is already queued; a key in processing is queued again by `done()`."""
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        self._adds.inc()
        self._enqueued_at[key] = asyncio.get_running_loop().time()
        if key in self._processing:
            return
        self._queue.append(key)
        self._depth.set(len(self._queue))
        self._wake_one()

    def add_after(self, key: K, delay: float) -> None:
        """Queue `key` after `delay` seconds; if it is already waiting, the earlier deadline wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        waiting = self._timers.get(key)
        if waiting is not None:
            if waiting[0] <= deadline:
                return
            waiting[1].cancel()
        self._timers[key] = (deadline, loop.call_at(deadline, self._fire, key))

    def add_rate_limited(self, key: K) -> None:
        """Queue `key` after its back-off: the larger of the per-key and the overall delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        per_key = min(self._max_delay, self._base_delay * 2**failures)
        self._retries.inc()
        self.add_after(key, max(per_key, self._bucket.reserve()))

    def forget(self, key: K) -> None:
        """Reset the back-off of `key` (call after it was handled successfully)."""
        self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> K:
        """The next key; the caller owns it until `done(key)`. Raises QueueShutDown once drained."""
        while not self._queue:
            if self._shutting_down:
                raise QueueShutDown(self.name)
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._getters:
                    self._getters.remove(waiter)
                elif self._queue:
                    self._wake_one()  # we were woken for an item we will not take: pass the wake-up on
                raise
        key = self._queue.popleft()
        self._depth.set(len(self._queue))
        self._processing.add(key)
        self._dirty.discard(key)
        enqueued = self._enqueued_at.pop(key, None)
        if enqueued is not None:
            self._queue_duration.observe(asyncio.get_running_loop().time() - enqueued)
        return key

    def done(self, key: K) -> None:
        """Release `key`; if it was re-added while processed, it is queued now."""
        self._processing.discard(key)
        if key in self._dirty and not self._shutting_down:
            self._queue.append(key)
            self._depth.set(len(self._queue))
            self._wake_one()

    def shutdown(self) -> None:
        """Stop accepting keys, drop delayed ones; `get()` hands out what is queued, then raises."""
        self._shutting_down = True
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def _wake_one(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


Handler = Callable[[K], Awaitable[float | None]]
"""Reconciles one key. May return seconds after which the key should be looked at again (a poll)."""


async def run_workers(
    queue: WorkQueue[K], handler: Handler[K], *, workers: int = 1, name: str | None = None
) -> None:
    """Drain `queue` with `workers` concurrent workers until it is shut down (or this is cancelled).

    Workers live in a TaskGroup owned by this coroutine, so cancelling it cancels them all and nothing
    is left running. A handler that raises has its key re-queued with back-off (and is logged and
    counted); one that returns has its back-off reset, and a returned delay re-queues the key after it.
    """
    label = name or queue.name
    work_duration = metrics.WORKQUEUE_WORK_DURATION.labels(label)
    errors = metrics.WORKQUEUE_HANDLER_ERRORS.labels(label)
    loop = asyncio.get_running_loop()

    async def worker() -> None:
        while True:
            try:
                key = await queue.get()
            except QueueShutDown:
                return
            started = loop.time()
            try:
                requeue_after = await handler(key)
            except Exception as exc:
                errors.inc()
                log.warning(
                    "Reconcile failed, will retry",
                    extra={
                        "queue": label,
                        "key": str(key),
                        "requeues": queue.num_requeues(key),
                        "err": repr(exc),
                    },
                    exc_info=exc,
                )
                queue.add_rate_limited(key)
            else:
                queue.forget(key)
                if requeue_after is not None:
                    queue.add_after(key, requeue_after)
            finally:
                work_duration.observe(loop.time() - started)
                queue.done(key)

    async with asyncio.TaskGroup() as group:
        for index in range(workers):
            group.create_task(worker(), name=f"{label}-worker-{index}")
