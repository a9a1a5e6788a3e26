"""Tags (issue 15): `with tags(...)` (nesting adds and restores, each thread and
asyncio task sees its own, task runs see the tags around their submission), `tags=`
on tasks and flows, a run's tags on its run record (task tags, enclosing flows' and
the context's), and tag concurrency limits (the named limit `tag:<name>`) on the
thread runner, async tasks and the process runner, with cancellation while waiting.
Ordered by gates, never by sleeping."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import FileGate, wait_for_state

import asyncflow
from asyncflow import State, TaskFuture, flow, tags, task
from asyncflow._concurrency import _registry
from asyncflow._tags import current_tags
from asyncflow.concurrency import set_limit
from asyncflow.context import tags as context_tags
from asyncflow.runs import FlowRun, TaskRun
from asyncflow.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

WAIT = 10.0


@pytest.fixture(autouse=True)
def fresh_limits() -> Iterator[None]:
    _registry.use_clock(None)  # forget limits, holders and waiters of other tests
    yield
    _registry.use_clock(None)


def test_nested_blocks_add_tags_and_leaving_restores_them() -> None:
    assert current_tags() == frozenset()
    with tags("etl", "nightly") as outer:
        assert outer == {"etl", "nightly"}
        with tags("db", "etl") as inner:
            assert inner == {"etl", "nightly", "db"}
            assert current_tags() == inner
        assert current_tags() == outer
    assert current_tags() == frozenset()


def test_tags_are_restored_when_the_block_raises() -> None:
    with pytest.raises(KeyError), tags("doomed"):
        raise KeyError("x")
    assert current_tags() == frozenset()


def test_the_yielded_set_is_a_copy() -> None:
    with tags("a") as current:
        current.add("not-a-tag")
        assert current_tags() == {"a"}


def test_a_tag_must_be_a_string() -> None:
    not_a_tag: object = 3  # not a str: mypy flags the call below, which is the point
    with pytest.raises(TypeError, match="tags must be strings"), tags("a", not_a_tag):  # type: ignore[arg-type]
        pass
    assert current_tags() == frozenset()


def test_prefect_paths_are_the_same_function() -> None:
    assert asyncflow.tags is context_tags is tags


@pytest.mark.timeout(20)
def test_another_thread_does_not_see_this_threads_tags() -> None:
    seen: list[frozenset[str]] = []
    with tags("main"):
        thread = threading.Thread(target=lambda: seen.append(current_tags()))
        thread.start()
        thread.join(WAIT)
    assert seen == [frozenset()]


@pytest.mark.asyncio
async def test_each_asyncio_task_has_its_own_tags() -> None:
    first_in = asyncio.Event()
    second_done = asyncio.Event()

    async def first() -> frozenset[str]:
        with tags("first"):
            first_in.set()
            await second_done.wait()  # the other task sets its tags meanwhile
            return current_tags()

    async def second() -> frozenset[str]:
        await first_in.wait()
        with tags("second"):
            second_done.set()
            return current_tags()

    got = await asyncio.gather(first(), second())
    assert got == [frozenset({"first"}), frozenset({"second"})]


def test_task_runs_see_the_tags_around_their_submission() -> None:
    @task
    def seen() -> frozenset[str]:
        return current_tags()

    @flow
    def pipeline() -> tuple[frozenset[str], frozenset[str]]:
        with tags("inside"):
            tagged = seen.submit()
        untagged = seen.submit()
        return tagged.result(timeout=WAIT), untagged.result(timeout=WAIT)

    assert pipeline() == (frozenset({"inside"}), frozenset())


@pytest.mark.asyncio
async def test_async_task_runs_see_the_tags_too() -> None:
    @task
    async def seen() -> frozenset[str]:
        return current_tags()

    with tags("async"):
        assert await seen() == {"async"}
        assert await seen.submit() == {"async"}


# ---- tags= on tasks and flows, and the run records ------------------------------------------


def test_a_runs_tags_are_its_tasks_its_flows_and_the_contexts() -> None:
    records: list[TaskRun | FlowRun] = []

    def keep(owner: Any, run: TaskRun | FlowRun, state: State) -> None:
        records.append(run)

    @task(tags=["db"], on_completion=[keep])
    def load() -> int:
        return 1

    @flow(tags=["etl"], on_completion=[keep])
    def pipeline() -> int:
        with tags("inner"):
            first = load.submit().result(timeout=WAIT)
        return first + load()  # a direct call carries the tags too

    with tags("nightly"):
        assert pipeline() == 2
    submitted, called, flow_run = records
    assert submitted.tags == ["db", "etl", "inner", "nightly"]
    assert called.tags == ["db", "etl", "nightly"]
    assert isinstance(flow_run, FlowRun)
    assert flow_run.tags == ["etl", "nightly"]


@pytest.mark.asyncio
async def test_async_runs_and_nested_flows_carry_the_tags_around_them() -> None:
    records: dict[str, list[str]] = {}

    def keep(owner: Any, run: TaskRun | FlowRun, state: State) -> None:
        records[owner.name] = run.tags

    @task(tags=["api"], on_completion=[keep])
    async def fetch() -> str:
        return ",".join(sorted(current_tags()))  # the context's, inside the run

    @flow(tags=["child"], on_completion=[keep])
    async def child() -> str:
        return await fetch.submit()

    @flow(tags=["parent"], on_completion=[keep])
    async def parent() -> str:
        return await child()

    assert await parent() == "child,parent"
    assert records == {
        "fetch": ["api", "child", "parent"],
        "child": ["child", "parent"],
        "parent": ["parent"],
    }


def test_with_options_replaces_the_tags() -> None:
    @task(tags=["a"])
    def noop() -> None: ...

    assert noop.tags == {"a"}
    assert noop.with_options(tags=["b", "c"]).tags == {"b", "c"}
    assert noop.with_options(name="other").tags == {"a"}

    @flow(tags=("x",))
    def pipeline() -> None: ...

    assert pipeline.with_options(tags=[]).tags == frozenset()
    assert pipeline.tags == {"x"}


def test_bad_tags_fail_at_decoration_naming_the_task_or_flow() -> None:
    with pytest.raises(TypeError, match=r"task 'load': tags must be a list of strings, got str"):
        task(name="load", tags="db")  # type: ignore[call-overload]  # a str: the point
    with pytest.raises(TypeError, match=r"@task: tags must be non-empty strings, got 3"):
        task(tags=["db", 3])  # not a str: the point
    with pytest.raises(TypeError, match=r"flow 'etl': tags must be a list of strings"):
        flow(name="etl", tags=5)  # type: ignore[call-overload]  # not iterable: the point


# ---- tag concurrency limits ---------------------------------------------------------------------


class Meter:
    """How many runs are inside at once (and the most ever), across threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.most = 0
        self.entered = threading.Semaphore(0)

    def enter(self) -> None:
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        self.entered.release()

    def leave(self) -> None:
        with self.lock:
            self.inside -= 1

    def wait_entered(self, count: int) -> None:
        for _ in range(count):
            assert self.entered.acquire(timeout=WAIT)


def pending(futures: list[TaskFuture[Any]]) -> list[str]:
    return [f.state.name for f in futures if f.state.is_pending()]


@pytest.mark.timeout(30)
def test_a_tag_limit_holds_runs_pending_on_the_thread_runner_without_a_thread() -> None:
    set_limit("tag:db", 2)
    meter = Meter()
    release = threading.Event()

    @task(tags=["db"])
    def query(i: int) -> int:
        meter.enter()
        try:
            assert release.wait(WAIT)
        finally:
            meter.leave()
        return i

    @task
    def untagged() -> str:
        return "ran"

    with ThreadPoolTaskRunner(max_workers=3) as runner:
        futures = [runner.submit(query, {"i": i}) for i in range(5)]
        meter.wait_entered(2)
        assert pending(futures) == ["Pending"] * 3  # waiting for a slot, not Running
        assert _registry.active("tag:db") == 2
        # Two threads are busy; the third is free: the waiting runs hold none.
        assert runner.submit(untagged, {}).result(timeout=WAIT) == "ran"
        release.set()
        assert [f.result(timeout=WAIT) for f in futures] == [0, 1, 2, 3, 4]
    assert meter.most == 2
    assert _registry.active("tag:db") == 0
    assert _registry.waiting() == 0


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_a_tag_limit_on_async_tasks_from_the_flows_tags() -> None:
    set_limit("tag:api", 1)
    inside: list[int] = []
    most = 0
    gates = [asyncio.Event() for _ in range(3)]
    entered = asyncio.Event()

    @task
    async def call(i: int) -> int:
        nonlocal most
        inside.append(i)
        most = max(most, len(inside))
        entered.set()
        await gates[i].wait()
        inside.remove(i)
        return i

    @flow(tags=["api"])  # the flow's tags limit the runs it submits
    async def pipeline() -> list[int]:
        futures = call.map([0, 1, 2])
        for i in range(3):
            await entered.wait()
            entered.clear()
            assert inside == [i]
            assert [f.state.is_pending() for f in futures] == [j > i for j in range(3)]
            gates[i].set()
        return await futures

    assert await pipeline() == [0, 1, 2]
    assert most == 1


@pytest.mark.timeout(30)
def test_a_run_waiting_for_a_tag_slot_can_be_cancelled() -> None:
    set_limit("tag:db", 1)
    release = threading.Event()
    ran: list[int] = []

    @task(tags=["db"])
    def query(i: int) -> int:
        ran.append(i)
        if i == 0:
            assert release.wait(WAIT)
        return i

    with ThreadPoolTaskRunner(max_workers=4) as runner:
        first = runner.submit(query, {"i": 0})
        wait_for_state(first, "Running")
        waiting = [runner.submit(query, {"i": i}) for i in (1, 2)]
        assert _registry.waiting() == 2
        assert waiting[0].cancel()
        assert waiting[0].state.is_cancelled()
        assert _registry.waiting() == 1  # it left the line at once
        release.set()
        assert first.result(timeout=WAIT) == 0
        assert waiting[1].result(timeout=WAIT) == 2
    assert ran == [0, 2]
    assert (_registry.active("tag:db"), _registry.waiting()) == (0, 0)


@pytest.mark.timeout(30)
def test_a_run_with_two_limited_tags_needs_both() -> None:
    set_limit("tag:a", 1)
    set_limit("tag:b", 1)
    release = threading.Event()

    @task
    def hold() -> str:
        assert release.wait(WAIT)
        return "held"

    @task
    def both() -> str:
        return "both"

    with ThreadPoolTaskRunner(max_workers=4) as runner:
        with tags("b"):
            holder = runner.submit(hold, {})
        wait_for_state(holder, "Running")
        with tags("a", "b"):
            needs_both = runner.submit(both, {})
        assert needs_both.state.is_pending()
        assert _registry.active("tag:a") == 0  # all at once or nothing
        release.set()
        assert needs_both.result(timeout=WAIT) == "both"


@pytest.mark.timeout(30)
def test_max_concurrency_and_a_tag_limit_both_hold() -> None:
    set_limit("tag:db", 2)
    meter = Meter()
    release = threading.Event()

    @task(tags=["db"], max_concurrency=1)
    def one_at_a_time(i: int) -> int:
        meter.enter()
        try:
            assert release.wait(WAIT)
        finally:
            meter.leave()
        return i

    @task(tags=["db"])
    def other(i: int) -> int:
        return -i

    with ThreadPoolTaskRunner(max_workers=4) as runner:
        limited = [runner.submit(one_at_a_time, {"i": i}) for i in range(3)]
        meter.wait_entered(1)
        # One db slot is the running run's, the other is held by the next run, which
        # waits for its task's slot: a db run of another task waits for a db slot.
        third = runner.submit(other, {"i": 7})
        assert pending([*limited, third]) == ["Pending"] * 3
        release.set()
        assert [f.result(timeout=WAIT) for f in limited] == [0, 1, 2]
        assert third.result(timeout=WAIT) == -7
    assert meter.most == 1
    assert (_registry.active("tag:db"), _registry.waiting()) == (0, 0)


def test_a_tag_without_a_limit_does_not_limit(caplog: pytest.LogCaptureFixture) -> None:
    @task(tags=["free"])
    def noop(i: int) -> int:
        return i

    assert noop.map(range(20)).result(timeout=WAIT) == list(range(20))
    assert "does not exist" not in caplog.text  # tags are labels first: no warning


@pytest.mark.timeout(30)
def test_a_tag_limit_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCFLOW_CONCURRENCY_LIMITS", "tag:env=1")
    _registry.use_clock(None)  # read the variable again
    release = threading.Event()

    @task(tags=["env"])
    def hold(i: int) -> int:
        if i == 0:
            assert release.wait(WAIT)
        return i

    with ThreadPoolTaskRunner(max_workers=2) as runner:
        first = runner.submit(hold, {"i": 0})
        wait_for_state(first, "Running")
        second = runner.submit(hold, {"i": 1})
        assert second.state.is_pending()
        release.set()
        assert second.result(timeout=WAIT) == 1


@task(tags=["cpu"])
def gated_in_a_process(started: FileGate, release: FileGate) -> int:
    import os

    started.open(str(os.getpid()))
    release.wait()
    return os.getpid()


@pytest.mark.timeout(60)
def test_a_tag_limit_holds_process_runs_in_the_parent(tmp_path: Path) -> None:
    set_limit("tag:cpu", 1)

    def gates(name: str) -> FileGate:
        return FileGate(tmp_path / name)

    with ProcessPoolTaskRunner(max_workers=2) as runner:
        first = runner.submit(gated_in_a_process, {"started": gates("s1"), "release": gates("r1")})
        second = runner.submit(gated_in_a_process, {"started": gates("s2"), "release": gates("r2")})
        gates("s1").wait()
        assert second.state.is_pending()  # two workers, one slot: held in the parent
        assert _registry.active("tag:cpu") == 1
        assert not gates("s2").is_open()
        gates("r1").open()
        gates("r2").open()
        first.result(timeout=WAIT)
        second.result(timeout=WAIT)
    assert (_registry.active("tag:cpu"), _registry.waiting()) == (0, 0)


# ---- direct calls, and runs inside runs --------------------------------------------------------


@pytest.mark.timeout(30)
def test_direct_calls_wait_for_their_tag_slots() -> None:
    set_limit("tag:db", 1)
    meter = Meter()
    release = threading.Event()

    @task(tags=["db"])
    def query(i: int) -> int:
        meter.enter()
        try:
            if i == 0:
                assert release.wait(WAIT)
        finally:
            meter.leave()
        return i

    results: list[int] = []
    first = threading.Thread(target=lambda: results.append(query(0)))
    first.start()
    meter.wait_entered(1)
    second = threading.Thread(target=lambda: results.append(query(1)))
    second.start()
    try:
        wait_until(lambda: _registry.waiting() == 1)  # the second call waits, Pending
        assert meter.inside == 1
    finally:
        release.set()
        first.join(WAIT)
        second.join(WAIT)
    assert results == [0, 1]
    assert meter.most == 1


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_async_direct_calls_wait_for_their_tag_slots() -> None:
    set_limit("tag:api", 1)
    entered = asyncio.Event()
    release = asyncio.Event()
    inside: list[int] = []

    @task(tags=["api"])
    async def call(i: int) -> int:
        inside.append(i)
        entered.set()
        if i == 0:
            await release.wait()
        inside.remove(i)
        return i

    first = asyncio.ensure_future(call(0))
    await entered.wait()
    second = asyncio.ensure_future(call(1))
    # ASYNC110: a queued ticket sets no event; a few loop turns get the call there.
    while _registry.waiting() != 1:  # noqa: ASYNC110
        await asyncio.sleep(0)
    assert inside == [0]
    release.set()
    assert await asyncio.gather(first, second) == [0, 1]


@pytest.mark.timeout(30)
def test_a_run_inside_a_run_holding_the_tags_slot_does_not_wait_for_it() -> None:
    set_limit("tag:db", 1)

    @task
    def child(x: int) -> int:
        return x + 1

    @task
    def parent() -> int:
        # Submitted from a run holding the only db slot (the flow's tags reach the
        # child too): waiting for that slot would wait for ever.
        return child.submit(1).result(timeout=WAIT) + child(10)

    @flow(tags=["db"])
    def pipeline() -> int:
        return parent.submit().result(timeout=WAIT)

    assert pipeline() == 13


def wait_until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) for another thread to reach a state we can observe."""
    reached = threading.Event()
    for _ in range(int(WAIT / 0.001)):
        if condition():
            return
        reached.wait(0.001)  # polling a state of another thread, bounded
    raise AssertionError("the condition was not reached")


@pytest.mark.timeout(60)
def test_many_tagged_runs_with_cancels_leave_no_slot_behind() -> None:
    set_limit("tag:db", 3)
    set_limit("tag:api", 2)
    meter = Meter()

    @task(tags=["db"])
    def query(i: int) -> int:
        meter.enter()
        meter.leave()
        return i

    with ThreadPoolTaskRunner(max_workers=8) as runner:
        futures = []
        for i in range(300):
            with tags(*(["api"] if i % 3 == 0 else [])):
                futures.append(runner.submit(query, {"i": i}))
            if i % 5 == 0:
                futures[-1].cancel()  # pending, parked or running: each must end clean
        for f in futures:
            f.wait(WAIT)
    assert all(f.state.is_final() for f in futures)
    done = [f.result() for f in futures if f.state.is_completed()]
    assert len(done) >= 240  # the 60 cancelled ones may have run before the cancel
    assert meter.most <= 3
    assert (_registry.active("tag:db"), _registry.active("tag:api")) == (0, 0)
    assert _registry.waiting() == 0
