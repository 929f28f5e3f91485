"""The injectable clocks and the one-task scheduler: order, exact instants, cancel, wake-ups."""

from __future__ import annotations

import asyncio

import pytest

from assist.clock import ManualClock, RealClock
from assist.timers import Scheduler

T0 = 1_767_225_600.0


class Recorder:
    def __init__(self, clock: ManualClock | RealClock) -> None:
        self.clock = clock
        self.fired: list[tuple[str, float, float]] = []  # (tag, deadline, fired at)
        self.event = asyncio.Event()

    def __call__(self, target: object, tag: str, deadline: float) -> None:
        self.fired.append((tag, deadline, self.clock.now()))
        self.event.set()


@pytest.fixture
async def manual():
    clock = ManualClock(T0)
    rec = Recorder(clock)
    sched = Scheduler(clock, rec)
    await sched.start()
    yield clock, sched, rec
    await sched.stop()


async def test_fires_in_deadline_order_at_exact_instants(manual) -> None:
    clock, sched, rec = manual
    for tag, offset in [("c", 180), ("a", 45), ("b", 60)]:
        sched.schedule(T0 + offset, object(), tag)
    await clock.advance(59.999)
    assert [t for t, _, _ in rec.fired] == ["a"]
    await clock.advance(1000)
    assert [t for t, _, _ in rec.fired] == ["a", "b", "c"]
    # The manual clock stops at each deadline, so every timer fires at its own instant, not late.
    assert all(at == deadline for _, deadline, at in rec.fired)
    assert len(sched) == 0


async def test_cancel_prevents_firing_and_is_idempotent(manual) -> None:
    clock, sched, rec = manual
    keep = sched.schedule(T0 + 10, object(), "keep")
    drop = sched.schedule(T0 + 5, object(), "drop")
    sched.cancel(drop)
    sched.cancel(drop)
    assert len(sched) == 1
    await clock.advance(20)
    assert [t for t, _, _ in rec.fired] == ["keep"]
    sched.cancel(keep)  # already fired: a no-op, the count must not go negative
    assert len(sched) == 0


async def test_earlier_deadline_wakes_a_parked_scheduler(manual) -> None:
    clock, sched, rec = manual
    sched.schedule(T0 + 3600, object(), "late")
    await clock.settle()
    assert clock.next_wakeup() == T0 + 3600
    sched.schedule(T0 + 1, object(), "soon")
    await clock.settle()
    assert clock.next_wakeup() == T0 + 1
    await clock.advance(1)
    assert [t for t, _, _ in rec.fired] == ["soon"]


async def test_many_timers_one_task_and_compaction(manual) -> None:
    clock, sched, rec = manual
    tasks_before = len(asyncio.all_tasks())
    entries = [sched.schedule(T0 + 1 + i % 300, i, f"t{i}") for i in range(6000)]
    assert len(asyncio.all_tasks()) == tasks_before  # no task per timer
    for e in entries[:4500]:
        sched.cancel(e)
    assert len(sched) == 1500
    assert len(sched._heap) < 6000  # cancelled entries were compacted away
    await clock.advance(400)
    assert sorted(t for t, _, _ in rec.fired) == sorted(f"t{i}" for i in range(4500, 6000))


async def test_a_failing_callback_does_not_stop_the_clock() -> None:
    clock = ManualClock(T0)
    seen: list[str] = []

    def on_fire(target: object, tag: str, deadline: float) -> None:
        if tag == "bad":
            raise ValueError("boom")
        seen.append(tag)

    sched = Scheduler(clock, on_fire)
    await sched.start()
    sched.schedule(T0 + 1, object(), "bad")
    sched.schedule(T0 + 2, object(), "good")
    await clock.advance(5)
    await sched.stop()
    assert seen == ["good"]


async def test_burst_of_due_timers_fires_in_batches() -> None:
    clock = ManualClock(T0)
    rec = Recorder(clock)
    sched = Scheduler(clock, rec)
    for i in range(5000):  # all already due, like deadlines that passed while the service was down
        sched.schedule(T0 - 10 + i * 0.001, object(), str(i))
    await sched.start()
    await clock.settle()
    await sched.stop()
    assert len(rec.fired) == 5000
    assert [int(t) for t, _, _ in rec.fired] == list(range(5000))


async def test_manual_clock_refuses_to_go_back() -> None:
    with pytest.raises(ValueError):
        await ManualClock(T0).advance(-1)


async def test_real_clock_fires_a_near_timer() -> None:
    clock = RealClock()
    rec = Recorder(clock)
    sched = Scheduler(clock, rec)
    await sched.start()
    deadline = clock.now() + 0.02
    sched.schedule(deadline, object(), "near")
    await asyncio.wait_for(rec.event.wait(), timeout=5)
    await sched.stop()
    (tag, dl, at), = rec.fired
    assert tag == "near" and at >= dl
