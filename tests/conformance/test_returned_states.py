"""Issue 15: a `State` returned by a task sets the run's final state, on every runner.

The rule lives in the core (`_core/_attempt.ending_of`): each runner only reports what
the task returned, so these cases check that the state survives each trip (pickled
back from a process worker, a Dask worker, a task worker) and that dependents, hooks
and retries see the final state, not a value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import WAIT, Boom, FileGate, Tally, ident

from asyncflow import exceptions
from asyncflow.states import StateType
from asyncflow.task_runners import TaskRunner

from .tasks import asettle, settle, settle_counted

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("settler", [settle, asettle], ids=["sync", "async"])
def test_each_returned_state_is_the_runs_final_state(runner: TaskRunner, settler: Any) -> None:
    with runner:
        futures = {
            kind: settler.submit(kind)
            for kind in (
                "completed",
                "failed",
                "failed-with-exception",
                "cancelled",
                "crashed",
                "running",
                "plain",
            )
        }
        for fut in futures.values():
            fut.wait(WAIT)
    name = settler.name
    completed = futures["completed"]
    assert completed.result() == {"rows": 3}
    assert (completed.state.type, completed.state.name, completed.state.message) == (
        StateType.COMPLETED,
        "Cached",
        "from cache",
    )
    assert futures["plain"].result() == "plain"  # a plain value completes as before

    failed = futures["failed"]
    assert (failed.state.type, failed.state.message) == (StateType.FAILED, "validation failed")
    with pytest.raises(exceptions.TaskFailed, match=f"{name}.*validation failed"):
        failed.result()

    with pytest.raises(Boom, match="bad row"):  # the exception in `data`, as it is
        futures["failed-with-exception"].result()
    assert futures["failed-with-exception"].state.message == "bad input"

    assert futures["cancelled"].state.type is StateType.CANCELLED
    with pytest.raises(exceptions.TaskCancelled, match=f"{name}.*nothing to do"):
        futures["cancelled"].result()
    assert futures["crashed"].state.type is StateType.CRASHED
    with pytest.raises(exceptions.TaskCrashed, match="lost the connection"):
        futures["crashed"].result()

    running = futures["running"]
    assert running.state.type is StateType.FAILED  # not final: a mistake, said so
    with pytest.raises(TypeError, match=f"{name}.*not a final state"):
        running.result()
    for fut in futures.values():
        assert fut.state.is_final()
        assert fut.state.attempts == 1


def test_dependents_see_the_returned_state(runner: TaskRunner, tmp_path: Path) -> None:
    """Dependents registered while the run executes (on Dask, its value would then
    stay on the cluster): they get the state's data, or do not run."""
    gate = FileGate(tmp_path / "gate")
    with runner:
        good = settle.submit("completed", gate)
        bad = settle.submit("failed", gate)
        after_good = ident.submit(good)
        after_bad = ident.submit(bad)
        gate.open()
        assert after_good.result(timeout=WAIT) == {"rows": 3}
        after_bad.wait(WAIT)
    assert after_bad.state.name == "NotReady"
    with pytest.raises(exceptions.UpstreamFailed) as info:
        after_bad.result()
    assert isinstance(info.value.__cause__, exceptions.TaskFailed)


def test_a_returned_failed_state_is_not_retried(runner: TaskRunner, tmp_path: Path) -> None:
    tally = Tally(tmp_path / "calls")
    with runner:
        fut = settle_counted.submit(tally)
        fut.wait(WAIT)
    assert fut.state.is_failed()
    assert fut.state.name == "Failed"
    assert tally.lines() == ["called"]  # retries=2, but the task chose its state


def test_hooks_fire_for_the_returned_state(runner: TaskRunner) -> None:
    seen: list[tuple[str, str]] = []

    def hook(kind: str) -> Any:
        return lambda t, s: seen.append((kind, s.name))

    hooked = settle.with_options(
        on_completion=[hook("completion")],
        on_failure=[hook("failure")],
        on_cancellation=[hook("cancellation")],
    )
    with runner:
        for kind in ("completed", "failed", "cancelled"):
            hooked.submit(kind).wait(WAIT)
    assert sorted(seen) == [
        ("cancellation", "Cancelled"),
        ("completion", "Cached"),
        ("failure", "Cancelled"),  # asyncflow's rule: every final state but Completed
        ("failure", "Failed"),
    ]


def test_a_mapped_element_returning_a_state(runner: TaskRunner) -> None:
    with runner:
        futures = settle.map(["plain", "failed", "completed"])
        values = futures.result(timeout=WAIT, raise_on_failure=False)
    assert values[0] == "plain"
    assert isinstance(values[1], exceptions.TaskFailed)
    assert values[2] == {"rows": 3}
    assert [f.state.type for f in futures] == [
        StateType.COMPLETED,
        StateType.FAILED,
        StateType.COMPLETED,
    ]
