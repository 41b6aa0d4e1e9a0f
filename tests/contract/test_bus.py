"""The bus contract, run against every adapter (the embedded SQLite log today).

Consumer groups, per-key order, committed offsets that survive a restart, at-least-once
redelivery after a failed handler, dead-lettering of poison events, idempotent publish.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from fogmap.bus.port import Bus, Subscription
from fogmap.bus.sqlite import SqliteBus
from fogmap.core.events import Envelope, TaskReleased, wrap
from tests.conftest import until

ADAPTERS: dict[str, Callable[[Path], Bus]] = {"sqlite": lambda p: SqliteBus(p / "bus.db",
                                                                           poll_seconds=0.05)}


@pytest.fixture(params=sorted(ADAPTERS))
async def make_bus(request: pytest.FixtureRequest, tmp_path: Path
                   ) -> AsyncIterator[Callable[[], Bus]]:
    made: list[Bus] = []

    def make() -> Bus:
        bus = ADAPTERS[request.param](tmp_path)
        made.append(bus)
        return bus

    yield make
    for bus in made:
        await bus.stop()


def ev(item: str, n: int) -> Envelope:
    return wrap(TaskReleased(task_id=f"t{n}", item_id=item, annotator="a"), "/test")


class Sink:
    def __init__(self, fail_on: set[str] | None = None, fail_times: int = 1) -> None:
        self.seen: list[Envelope] = []
        self.fail_on, self.fail_times = fail_on or set(), fail_times
        self.failures = 0

    async def __call__(self, events: list[Envelope]) -> None:
        for e in events:
            if e.data["task_id"] in self.fail_on and self.failures < self.fail_times:
                self.failures += 1
                raise RuntimeError("boom")
        self.seen.extend(events)


async def test_each_group_gets_every_event_in_key_order(make_bus) -> None:  # type: ignore[no-untyped-def]
    bus = make_bus()
    a, b = Sink(), Sink()
    bus.subscribe(Subscription(("fogmap.tasks",), "g1", a, batch_size=7))
    bus.subscribe(Subscription(("fogmap.tasks",), "g2", b, batch_size=3))
    await bus.start()
    events = [ev(f"item-{i % 5}", i) for i in range(60)]
    for lo in range(0, 60, 9):
        await bus.publish(events[lo:lo + 9])
    await until(lambda: len(a.seen) == 60 and len(b.seen) == 60, 10, what="delivery")
    for sink in (a, b):
        for key in {e.subject for e in events}:
            assert [e.id for e in sink.seen if e.subject == key] == \
                   [e.id for e in events if e.subject == key]


async def test_committed_offsets_survive_a_restart(make_bus) -> None:  # type: ignore[no-untyped-def]
    bus = make_bus()
    first = Sink()
    bus.subscribe(Subscription(("fogmap.tasks",), "g", first))
    await bus.start()
    await bus.publish([ev("x-1", i) for i in range(10)])
    await until(lambda: len(first.seen) == 10, 10)
    await until(lambda: asyncio.ensure_future(bus.lag("g")).done() or True, 1)
    await bus.stop()
    await bus.publish([ev("x-1", i) for i in range(10, 15)])
    again = make_bus()
    second = Sink()
    again.subscribe(Subscription(("fogmap.tasks",), "g", second))
    await again.start()
    await until(lambda: len(second.seen) == 5, 10, what="resume after restart")
    assert [e.data["task_id"] for e in second.seen] == [f"t{i}" for i in range(10, 15)]
    assert await again.lag("g") == 0


async def test_failed_handler_is_redelivered_then_dead_lettered(make_bus) -> None:  # type: ignore[no-untyped-def]
    bus = make_bus()
    flaky = Sink(fail_on={"t3"}, fail_times=2)
    poison = Sink(fail_on={"t5"}, fail_times=10**6)
    bus.subscribe(Subscription(("fogmap.tasks",), "flaky", flaky, max_attempts=5))
    bus.subscribe(Subscription(("fogmap.tasks",), "poison", poison, max_attempts=3))
    await bus.start()
    await bus.publish([ev("k", i) for i in range(8)])
    await until(lambda: {e.data["task_id"] for e in flaky.seen} == {f"t{i}" for i in range(8)},
                10, what="redelivery")
    await until(lambda: len({e.data["task_id"] for e in poison.seen}) == 7, 10)
    assert "t5" not in {e.data["task_id"] for e in poison.seen}
    assert isinstance(bus, SqliteBus)
    await until(lambda: bus.count("fogmap.tasks.dlq") >= 1, 5, what="dead letter")


async def test_publishing_the_same_event_twice_appends_it_once(make_bus) -> None:  # type: ignore[no-untyped-def]
    bus = make_bus()
    sink = Sink()
    bus.subscribe(Subscription(("fogmap.tasks",), "g", sink))
    await bus.start()
    e = ev("k", 1)
    await bus.publish([e])
    await bus.publish([e, ev("k", 2)])
    await until(lambda: len(sink.seen) == 2, 10)
    await asyncio.sleep(0.2)
    assert [x.data["task_id"] for x in sink.seen] == ["t1", "t2"]


async def test_uncommitted_readers_replay_from_the_beginning(make_bus) -> None:  # type: ignore[no-untyped-def]
    bus = make_bus()
    await bus.publish([ev("k", i) for i in range(4)])
    view = Sink()
    live = Sink()
    bus.subscribe(Subscription(("fogmap.tasks",), "view", view, commit=False))
    bus.subscribe(Subscription(("fogmap.tasks",), "live", live, commit=False,
                               from_beginning=False))
    await bus.start()
    await until(lambda: len(view.seen) == 4, 10)
    await bus.publish([ev("k", 9)])
    await until(lambda: len(live.seen) == 1 and len(view.seen) == 5, 10)
