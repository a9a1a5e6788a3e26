"""Queued and running runs, `future.cancel()`, `cancel_all()`, and a failing flow body,
on every runner. Runs are held with file gates (tests/helpers.py), so every "this one
runs, that one waits" is a fact when the test looks, not a guess about timing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import WAIT, FileGate, ident, wait_for_state, wait_gone

from asyncflow import TaskFuture, exceptions
from asyncflow.task_runners import TaskRunner

from . import tasks
from .registry import QUEUED, SLOTS, Capabilities, expect_defect

pytestmark = pytest.mark.timeout(30)


@dataclass
class Held:
    """Every slot busy with a gated run, and QUEUED runs waiting behind them."""

    running: list[TaskFuture[int]]
    releases: list[FileGate]
    pids: list[int]
    queued: list[TaskFuture[int]]

    def release_all(self) -> None:
        for gate in self.releases:
            if not gate.is_open():
                gate.open()


def hold_every_slot(tmp_path: Path) -> Held:
    """Fill the slots, queue runs, then free one slot for a fresh gated run: a worker
    that takes its next work now sees a long queue (where batching would happen)."""
    started = [FileGate(tmp_path / f"started-{i}") for i in range(SLOTS + 1)]
    releases = [FileGate(tmp_path / f"release-{i}") for i in range(SLOTS + 1)]
    first = [tasks.blocker.submit(started[i], releases[i]) for i in range(SLOTS)]
    pids = [int(gate.wait()) for gate in started[:SLOTS]]
    successor = tasks.blocker.submit(started[SLOTS], releases[SLOTS])
    queued = [ident.submit(i) for i in range(QUEUED)]
    releases[0].open()
    assert first[0].result(timeout=WAIT) == pids[0]
    pids = [*pids[1:], int(started[SLOTS].wait())]
    wait_for_state(successor, "Running")  # a process run reports it a moment later
    return Held([*first[1:], successor], releases[1:], pids, queued)


def test_a_queued_run_waits_in_the_queued_state(
    runner: TaskRunner, caps: Capabilities, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    expect_defect(request, caps, "queued_state")
    with runner:
        held = hold_every_slot(tmp_path)
        try:
            assert [f.state.name for f in held.running] == ["Running"] * SLOTS
            if caps.queue_is_ours:
                assert [f.state.name for f in held.queued] == [caps.queued_state_name] * QUEUED
                assert not any(f.done() for f in held.queued)
            else:  # the engine schedules them itself: queued, running, or even done
                names = {f.state.name for f in held.queued}
                assert names <= {caps.queued_state_name, "Completed"}, names
        finally:
            held.release_all()
        assert [f.result(timeout=WAIT) for f in held.queued] == list(range(QUEUED))


def test_cancelling_a_queued_run_cancels_it_and_nothing_else(
    runner: TaskRunner, caps: Capabilities, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    expect_defect(request, caps, "cancel_queued")
    with runner:
        held = hold_every_slot(tmp_path)
        try:
            victim = held.queued[0]
            downstream = ident.submit(victim)
            cancelled = victim.cancel()
            if not caps.queue_is_ours and not cancelled:  # the engine ran it already
                assert victim.state.is_completed()
                held.release_all()
                assert downstream.result(timeout=WAIT) == 0
                return
            assert cancelled is True
            assert victim.state.is_cancelled()
            assert victim.state.name == "Cancelled"
        finally:
            held.release_all()
        with pytest.raises(exceptions.TaskCancelled):
            victim.result(timeout=WAIT)
        with pytest.raises(exceptions.UpstreamFailed):
            downstream.result(timeout=WAIT)
        assert downstream.state.name == "NotReady"
        # The runs beside it are untouched: the running ones finish in their own workers.
        assert [f.result(timeout=WAIT) for f in held.running] == held.pids
        assert [f.result(timeout=WAIT) for f in held.queued[1:]] == list(range(1, QUEUED))


def test_cancelling_a_running_sync_run(
    runner: TaskRunner, caps: Capabilities, tmp_path: Path
) -> None:
    started, release, finished = (FileGate(tmp_path / n) for n in ("s", "r", "f"))
    with runner:
        fut = tasks.blocker.submit(started, release, finished)
        downstream = ident.submit(fut)
        worker = int(started.wait())
        wait_for_state(fut, "Running")  # a process run reports it a moment later
        cancelled = fut.cancel()
        fut.wait(timeout=0.0 if cancelled is False else WAIT)
        if caps.cancel_running_sync == "refused":
            assert cancelled is False
            assert fut.state.is_running()
            release.open()
            assert downstream.result(timeout=WAIT) == worker
            assert fut.state.is_completed()
            return
        assert cancelled is True
        assert fut.state.is_cancelled()
        with pytest.raises(exceptions.TaskCancelled):
            fut.result(timeout=WAIT)
        with pytest.raises(exceptions.UpstreamFailed):
            downstream.result(timeout=WAIT)
        if caps.cancel_running_sync == "killed":
            assert wait_gone({worker}) == set()
            assert not finished.is_open()
        else:  # "abandoned": the function runs on; its late result is discarded
            assert caps.cancel_running_sync == "abandoned"
            release.open()
            finished.wait()
        assert ident.submit("next").result(timeout=WAIT) == "next"  # the runner goes on
        release.open()
    assert fut.state.is_cancelled()  # a late outcome does not overwrite it


def test_cancelling_a_running_async_run_stops_it(runner: TaskRunner, tmp_path: Path) -> None:
    started, release, finished = (FileGate(tmp_path / n) for n in ("s", "r", "f"))
    with runner:
        fut = tasks.ablocker.submit(started, release, finished)
        started.wait()
        assert fut.cancel() is True
        fut.wait(timeout=WAIT)  # the cancellation reaches the run asynchronously
        assert fut.state.is_cancelled()
        with pytest.raises(exceptions.TaskCancelled):
            fut.result(timeout=WAIT)
        release.open()
        assert ident.submit("next").result(timeout=WAIT) == "next"
    assert fut.state.is_cancelled()


def test_cancel_all_cancels_the_queued_runs_and_lets_the_running_finish(
    runner: TaskRunner, caps: Capabilities, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    expect_defect(request, caps, "cancel_queued")
    with runner:
        held = hold_every_slot(tmp_path)
        # Where queued runs already count as running (handed to an engine: Dask),
        # cancel_all() has nothing queued to cancel and they all finish.
        queued_here = caps.queued_state_name == "Pending"
        try:
            assert runner.cancel_all() == (QUEUED if queued_here else 0)
            assert runner.cancel_all() == 0
        finally:
            held.release_all()
        assert [f.result(timeout=WAIT) for f in held.running] == held.pids
    expected = "Cancelled" if queued_here else "Completed"
    assert [f.state.name for f in held.queued] == [expected] * QUEUED
