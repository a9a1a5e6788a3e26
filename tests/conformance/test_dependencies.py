"""Dependencies, mapping rules, nested submission and what travels, on every runner:
wait_for, allow_failure, futures inside containers, quote, `.map` (unmapped, str
broadcast, dict keys, defaults, futures, shape errors), tasks that submit tasks, and
arguments/results that cannot be pickled where a runner pickles."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from helpers import WAIT, Boom, FileGate, Tally, ident

from asyncflow import allow_failure, exceptions, quote, task, unmapped
from asyncflow.task_runners import TaskRunner

from . import tasks
from .registry import SLOTS, Capabilities, expect_defect

pytestmark = pytest.mark.timeout(30)


def test_wait_for_orders_runs_without_data(runner: TaskRunner, tmp_path: Path) -> None:
    tally, gate = Tally(tmp_path / "order"), FileGate(tmp_path / "gate")
    with runner:
        a = tasks.record.submit(tally, "a", gate)
        b = tasks.record.submit(tally, "b", wait_for=[a])  # else "b" would come first
        gate.open()
        assert b.result(timeout=WAIT) == "b"
    assert tally.lines() == ["a", "b"]


def test_allow_failure_hands_the_exception_downstream(runner: TaskRunner) -> None:
    with runner:
        bad = tasks.fail_with.submit("handled")
        seen = tasks.describe.submit(allow_failure(bad))
        ordered = ident.submit(1, wait_for=[allow_failure(bad)])
        assert seen.result(timeout=WAIT) == "Boom: handled"
        assert ordered.result(timeout=WAIT) == 1
    assert isinstance(bad.exception(), Boom)


def test_futures_inside_containers_are_resolved(runner: TaskRunner) -> None:
    with runner:
        one, two = ident.submit(1), tasks.aadd.submit(1, 1)
        fut = tasks.pair.submit([one, {"k": two}], (two, {one}))
        assert fut.result(timeout=WAIT) == ([1, {"k": 2}], (2, {1}))


def test_quoted_and_plain_values_arrive_as_the_runner_carries_them(
    runner: TaskRunner, caps: Capabilities
) -> None:
    value = {"a": [1, 2]}
    with runner:
        plain = ident.submit(value).result(timeout=WAIT)
        quoted = ident.submit(quote(value)).result(timeout=WAIT)
    assert plain == quoted == value
    # Documented: only a runner that does not pickle hands over the very object.
    assert (plain is value) is (not caps.pickles)
    assert (quoted is value) is (not caps.pickles)


def test_map_rules(runner: TaskRunner) -> None:
    with runner:
        assert tasks.scale.map([1, 2, 3]).result() == [10, 20, 30]  # defaults not mapped
        assert tasks.pair.map([1, 2], "ab").result() == [(1, "ab"), (2, "ab")]
        assert tasks.pair.map([1, 2], unmapped([0])).result() == [(1, [0]), (2, [0])]
        assert tasks.pair.map({"x": 1, "y": 2}, 0).result() == [("x", 0), ("y", 0)]
        listed = ident.submit([1, 2, 3])  # a future: waited for, its result mapped
        assert tasks.scale.map(listed, factor=2).result() == [2, 4, 6]
        first = ident.submit(5)
        assert tasks.add.map([first, 1], [1, 1]).result() == [6, 2]
        assert tasks.add.map(range(100), 1).result() == list(range(1, 101))  # in order
        assert tasks.aadd.map([1, 2], 1).result() == [2, 3]
        with pytest.raises(exceptions.MappingLengthMismatch):
            tasks.add.map([1, 2], [1, 2, 3])
        with pytest.raises(exceptions.MappingMissingIterable):
            tasks.add.map(1, 2)


def test_a_failed_element_fails_only_its_own_future(runner: TaskRunner) -> None:
    with runner:
        futures = tasks.describe.map([1, ident.submit(2)])
        failing = tasks.fail_with.map(["x", "y"])
        assert futures.result() == ["int: 1", "int: 2"]
        assert all(isinstance(f.exception(timeout=WAIT), Boom) for f in failing)


def test_nested_submission_on_a_bounded_runner_does_not_deadlock(
    runner: TaskRunner, caps: Capabilities
) -> None:
    # Documented difference: a runner that cannot lend a blocked slot nests only while
    # a slot stays free for the children.
    parents_n = 2 * SLOTS if caps.nests_past_its_slots else SLOTS - 1
    with runner:
        parents = tasks.child_sum.map([3] * parents_n)  # these slots block on children
        results = parents.result(timeout=WAIT)
        assert tasks.achild_sum.submit(4).result(timeout=WAIT) == 10
    assert [total for total, _ in results] == [6] * parents_n


def test_nested_runs_share_the_submitting_runs_process(
    runner: TaskRunner, caps: Capabilities
) -> None:
    with runner:
        parent, child = tasks.child_pid.submit().result(timeout=WAIT)
    assert parent == child
    assert (parent == os.getpid()) is caps.in_process


def test_closures_run_on_every_runner(runner: TaskRunner, caps: Capabilities) -> None:
    offset = 7
    with runner:
        if not caps.ships_local_tasks:  # documented: tasks travel by module and name
            with pytest.raises(exceptions.SerializationError, match=r"'<lambda>'.*module level"):
                task(lambda x: x + offset).submit(1)
            return
        assert task(lambda x: x + offset).submit(1).result(timeout=WAIT) == 8


def test_an_unpicklable_argument(runner: TaskRunner, caps: Capabilities) -> None:
    lock = threading.Lock()
    with runner:
        fut = tasks.describe.submit(lock)
        ok = ident.submit(1)
        if caps.pickles:
            with pytest.raises(exceptions.SerializationError, match="'describe'") as info:
                fut.result(timeout=WAIT)
            assert "lock" in str(info.value)
            assert fut.state.is_failed()
        else:
            assert fut.result(timeout=WAIT).startswith("lock")
        assert ok.result(timeout=WAIT) == 1


def test_an_unpicklable_result(
    runner: TaskRunner, caps: Capabilities, request: pytest.FixtureRequest
) -> None:
    expect_defect(request, caps, "unpicklable_result")
    with runner:
        fut = tasks.make_unpicklable.submit()
        if caps.pickles_results:
            with pytest.raises(exceptions.SerializationError, match="'make_unpicklable'") as info:
                fut.result(timeout=WAIT)
            assert "Unpicklable" in str(info.value)
        else:
            assert isinstance(fut.result(timeout=WAIT), tasks.Unpicklable)
        assert ident.submit(1).result(timeout=WAIT) == 1
