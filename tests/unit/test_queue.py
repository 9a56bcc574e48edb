"""The work queue's guarantees: de-duplication, one worker per key, back-off, shutdown, owned workers.

Delays are small and real; tests wait for the outcome (a `get()` or an event) with a generous bound
and then check how long it took, so nothing depends on a sleep being long enough.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from prometheus_client import REGISTRY

from syncer.cache.queue import QueueShutDown, WorkQueue, run_workers

BOUND = 5.0  # upper bound for anything that should happen "soon"; never reached when things work
EPS = 0.005  # timer granularity slack


def sample(name: str, queue: str) -> float:
    return REGISTRY.get_sample_value(name, {"name": queue}) or 0.0


async def timed_get(queue: WorkQueue[str]) -> tuple[str, float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    key = await asyncio.wait_for(queue.get(), BOUND)
    return key, loop.time() - started


async def test_keys_are_deduplicated_and_fifo() -> None:
    q: WorkQueue[str] = WorkQueue("t-dedup")
    adds = sample("workqueue_adds_total", "t-dedup")
    for key in ["a", "b", "a", "c", "b"]:
        q.add(key)
    assert len(q) == 3
    assert sample("workqueue_adds_total", "t-dedup") - adds == 3
    assert sample("workqueue_depth", "t-dedup") == 3
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]
    assert len(q) == 0
    assert sample("workqueue_depth", "t-dedup") == 0


async def test_key_readded_while_processing_waits_for_done() -> None:
    q: WorkQueue[str] = WorkQueue("t-processing")
    q.add("a")
    assert await q.get() == "a"
    q.add("a")  # a change arrives while "a" is being handled
    q.add("a")
    assert len(q) == 0  # parked: no second worker may take it now
    q.add("b")
    assert await q.get() == "b"
    q.done("a")
    assert len(q) == 1  # re-queued once, for the change that arrived meanwhile
    assert await q.get() == "a"
    q.done("a")
    q.done("b")
    assert len(q) == 0


async def test_blocked_getter_is_woken_by_add() -> None:
    q: WorkQueue[str] = WorkQueue("t-wake")
    getter = asyncio.create_task(q.get())
    q.add("x")
    assert await asyncio.wait_for(getter, BOUND) == "x"


async def test_add_after_delays_and_earliest_deadline_wins() -> None:
    q: WorkQueue[str] = WorkQueue("t-after")
    q.add_after("slow", 0.05)
    assert len(q) == 0
    key, waited = await timed_get(q)
    assert key == "slow" and waited >= 0.05 - EPS

    q.add_after("k", 60)
    q.add_after("k", 0.02)  # earlier: replaces the long wait
    key, waited = await timed_get(q)
    assert key == "k" and waited < 1

    q.add_after("j", 0.02)
    q.add_after("j", 60)  # later: ignored
    key, waited = await timed_get(q)
    assert key == "j" and waited < 1

    q.add_after("now", 0)
    assert len(q) == 1


async def test_rate_limited_adds_back_off_per_key_and_forget_resets() -> None:
    q: WorkQueue[str] = WorkQueue("t-backoff", base_delay=0.02, max_delay=0.5, qps=0)
    retries = sample("workqueue_retries_total", "t-backoff")
    expected = [0.02, 0.04, 0.08]
    for attempt, delay in enumerate(expected, start=1):
        q.add_rate_limited("k")
        assert q.num_requeues("k") == attempt
        key, waited = await timed_get(q)
        assert key == "k" and waited >= delay - EPS
        q.done("k")
    assert sample("workqueue_retries_total", "t-backoff") - retries == 3
    q.forget("k")
    assert q.num_requeues("k") == 0
    q.add_rate_limited("k")
    key, waited = await timed_get(q)
    assert waited < 0.04  # back to the base delay


async def test_per_key_backoff_is_capped() -> None:
    q: WorkQueue[str] = WorkQueue("t-cap", base_delay=0.01, max_delay=0.03, qps=0)
    for _ in range(10):
        q.add_rate_limited("k")  # one timer: every later call asks for a later deadline and is ignored
    assert q.num_requeues("k") == 10
    key, _ = await timed_get(q)
    q.done(key)
    q.add_rate_limited("k")  # uncapped this would be 0.01 * 2**10 = 10 s
    key, waited = await timed_get(q)
    assert key == "k" and 0.03 - EPS <= waited < 1


async def test_overall_bucket_limits_retries_across_keys() -> None:
    # 20 retries per second, no burst beyond one: the second key waits ~50 ms although its own
    # per-key delay is tiny.
    q: WorkQueue[str] = WorkQueue("t-bucket", base_delay=0.001, qps=20, burst=1)
    q.add_rate_limited("a")
    q.add_rate_limited("b")
    loop = asyncio.get_running_loop()
    started = loop.time()
    got = {await asyncio.wait_for(q.get(), BOUND) for _ in range(2)}
    assert got == {"a", "b"}
    assert loop.time() - started >= 0.05 - EPS


async def test_shutdown_drains_then_raises_and_wakes_getters() -> None:
    q: WorkQueue[str] = WorkQueue("t-shutdown")
    waiting = asyncio.create_task(q.get())
    q.shutdown()
    with pytest.raises(QueueShutDown):
        await asyncio.wait_for(waiting, BOUND)

    q2: WorkQueue[str] = WorkQueue("t-shutdown-2")
    q2.add("queued")
    q2.add_after("delayed", 0.01)
    q2.shutdown()
    q2.add("late")
    assert await q2.get() == "queued"
    with pytest.raises(QueueShutDown):
        await q2.get()
    assert q2.shutting_down


async def test_cancelled_getter_leaves_queue_usable() -> None:
    q: WorkQueue[str] = WorkQueue("t-cancel")
    getter = asyncio.create_task(q.get())
    getter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await getter
    q.add("x")
    assert await asyncio.wait_for(q.get(), BOUND) == "x"


async def test_workers_never_handle_one_key_concurrently() -> None:
    q: WorkQueue[str] = WorkQueue("t-exclusive")
    active: Counter[str] = Counter()
    overlaps: list[str] = []
    handled: Counter[str] = Counter()
    release = asyncio.Event()
    both_started = asyncio.Event()
    a_again = asyncio.Event()

    async def handler(key: str) -> None:
        active[key] += 1
        if active[key] > 1:
            overlaps.append(key)
        handled[key] += 1
        if handled.total() == 2:
            both_started.set()
        await release.wait()
        active[key] -= 1
        if handled["a"] == 2:
            a_again.set()

    runner = asyncio.create_task(run_workers(q, handler, workers=4, name="t-exclusive"))
    q.add("a")
    q.add("b")
    await asyncio.wait_for(both_started.wait(), BOUND)  # "a" and "b" are both being handled
    for _ in range(5):
        q.add("a")  # changes to "a" while it is handled: parked, not given to an idle worker
    assert len(q) == 0
    release.set()
    await asyncio.wait_for(a_again.wait(), BOUND)  # the parked "a" is handled once more
    q.shutdown()
    await asyncio.wait_for(runner, BOUND)
    assert overlaps == []
    assert handled == Counter({"a": 2, "b": 1})


async def test_failures_are_retried_with_backoff_then_forgotten() -> None:
    q: WorkQueue[str] = WorkQueue("t-retry", base_delay=0.01, qps=0)
    errors = sample("workqueue_handler_errors_total", "t-retry")
    attempts: list[float] = []
    succeeded = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def handler(key: str) -> None:
        attempts.append(loop.time())
        if len(attempts) < 3:
            raise RuntimeError("transient")
        succeeded.set()

    runner = asyncio.create_task(run_workers(q, handler, workers=2, name="t-retry"))
    q.add("k")
    await asyncio.wait_for(succeeded.wait(), BOUND)
    q.shutdown()
    await asyncio.wait_for(runner, BOUND)

    assert len(attempts) == 3
    assert attempts[1] - attempts[0] >= 0.01 - EPS
    assert attempts[2] - attempts[1] >= 0.02 - EPS
    assert q.num_requeues("k") == 0  # forgotten after the success
    assert sample("workqueue_handler_errors_total", "t-retry") - errors == 2
    assert (REGISTRY.get_sample_value("workqueue_work_duration_seconds_count", {"name": "t-retry"}) or 0) >= 3


async def test_handler_can_ask_for_a_later_look() -> None:
    q: WorkQueue[str] = WorkQueue("t-poll")
    seen: list[float] = []
    twice = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def handler(key: str) -> float | None:
        seen.append(loop.time())
        if len(seen) == 2:
            twice.set()
            return None
        return 0.03

    runner = asyncio.create_task(run_workers(q, handler, name="t-poll"))
    q.add("k")
    await asyncio.wait_for(twice.wait(), BOUND)
    q.shutdown()
    await asyncio.wait_for(runner, BOUND)
    assert seen[1] - seen[0] >= 0.03 - EPS


async def test_cancelling_run_workers_leaves_no_tasks_behind() -> None:
    q: WorkQueue[str] = WorkQueue("t-owned")
    started = asyncio.Event()

    async def handler(key: str) -> None:
        started.set()
        await asyncio.Event().wait()  # blocks until cancelled

    runner = asyncio.create_task(run_workers(q, handler, workers=3, name="t-owned"))
    q.add("k")
    await asyncio.wait_for(started.wait(), BOUND)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    leftovers = [t for t in asyncio.all_tasks() if (t.get_name() or "").startswith("t-owned-worker")]
    assert leftovers == []
    # The key in flight was released: the queue can hand it out again.
    q.add("k")
    assert await asyncio.wait_for(q.get(), BOUND) == "k"
