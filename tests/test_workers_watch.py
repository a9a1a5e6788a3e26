"""The submitter's watcher follows the broker's feed (`finished_since`): a wake-up
costs the runs that finished since the last one, not a look at every run in flight;
`outcomes` is asked only for futures rebuilt from a run id, once (their run may have
finished before the watcher's cursor)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest
import workers_tasks as wt
from helpers import WAIT, FileGate
from workers_support import ThreadWorker

from asyncflow import TaskFuture, flow, task_worker
from asyncflow._broker import Outcome, RunStatus, open_broker
from asyncflow._taskworkers import WorkerTaskRunner

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def url() -> str:
    return f"memory://test-{uuid.uuid4().hex}"


class Spy:
    """Records the ids each `outcomes` call of the broker at `url` asks for."""

    def __init__(self, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.broker = broker = open_broker(url)  # the process's one memory broker of that name
        self.asked: list[list[str]] = []
        self.lock = threading.Lock()
        real = broker.outcomes

        def outcomes(run_ids: Collection[str]) -> list[Outcome]:
            with self.lock:
                self.asked.append(list(run_ids))
            return real(run_ids)

        monkeypatch.setattr(broker, "outcomes", outcomes)


def test_submitted_runs_are_reported_from_the_feed(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(url, monkeypatch)
    with ThreadWorker(url, wt.noop, limit=4), WorkerTaskRunner(url):
        futures = [wt.noop.submit(i) for i in range(40)]
        assert [f.result(timeout=WAIT) for f in futures] == list(range(40))
        assert wt.noop.map(range(10)).result(timeout=WAIT) == list(range(10))
    assert spy.asked == []  # never one look per run in flight


def test_a_rebuilt_future_whose_run_finished_before_the_cursor_still_ends(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ThreadWorker(url, wt.noop), WorkerTaskRunner(url):
        done = wt.noop.submit(7)
        assert done.result(timeout=WAIT) == 7
        rid = task_worker.run_id(done)
    spy = Spy(url, monkeypatch)
    real_status = spy.broker.status
    seen: list[Any] = []

    def status_before_it_finished(run_id: str) -> RunStatus | None:
        # The race: the run was queued when the future was rebuilt, and finished
        # before the watcher took its cursor, so the feed never lists it.
        if not seen:
            seen.append(run_id)
            return RunStatus.QUEUED
        return real_status(run_id)

    monkeypatch.setattr(spy.broker, "status", status_before_it_finished)
    rebuilt = task_worker.future(rid, broker=url)
    assert rebuilt.result(timeout=WAIT) == 7
    assert spy.asked == [[rid]]  # the one fallback look, for the rebuilt run only


@pytest.mark.parametrize("stop", ["cancel", "failing flow"])
def test_a_run_a_worker_took_unseen_is_treated_as_running_when_stopped(
    url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stop: str
) -> None:
    """The watcher's status poll lags the broker: a worker may hold a run whose future
    still says Pending. Stopping it asks the broker, which knows: the run is Running
    (a sync run is not interrupted, as on a thread), never Cancelled while it runs."""
    broker = open_broker(url)
    monkeypatch.setattr(broker, "status", lambda run_id: RunStatus.QUEUED)  # never seen taken
    started, release = FileGate(tmp_path / "started"), FileGate(tmp_path / "release")
    futures: list[TaskFuture[int]] = []

    @flow(task_runner=WorkerTaskRunner(url))
    def body_fails() -> None:
        futures.append(wt.announce_then_hold.submit(started, release))
        started.wait()
        assert futures[0].state.is_pending()  # the race this test is about
        release.open()  # the flow waits for the run it cannot stop
        raise RuntimeError("the body fails")

    with ThreadWorker(url, wt.announce_then_hold):
        if stop == "cancel":
            with WorkerTaskRunner(url):
                fut = wt.announce_then_hold.submit(started, release)
                started.wait()
                assert fut.state.is_pending()  # the race this test is about
                assert fut.cancel() is False  # refused, as for a thread run
                assert fut.state.is_running()
                release.open()
                assert fut.result(timeout=WAIT) == os.getpid()
        else:
            with pytest.raises(RuntimeError, match="the body fails"):
                body_fails()
            assert futures[0].state.is_completed()


def test_a_run_that_ended_unseen_ends_with_its_outcome_when_stopped(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither the status poll nor the feed has seen the run end: a stop then finds
    it final in the broker and the future ends with the worker's result."""
    broker = open_broker(url)
    acked = threading.Event()
    real_ack = broker.ack

    def ack(*args: Any, **kwargs: Any) -> bool:
        stored = real_ack(*args, **kwargs)
        acked.set()
        return stored

    monkeypatch.setattr(broker, "ack", ack)
    monkeypatch.setattr(broker, "status", lambda run_id: RunStatus.QUEUED)
    monkeypatch.setattr(broker, "finished_since", lambda cursor, limit=0: ([], cursor or 0))
    with ThreadWorker(url, wt.noop), WorkerTaskRunner(url):
        fut = wt.noop.submit(5)
        assert acked.wait(WAIT)
        assert fut.state.is_pending()  # nothing here has seen it run
        assert fut.cancel() is False  # it ran: not Cancelled
        assert fut.state.is_completed()
        assert fut.result(timeout=0) == 5


def test_a_run_stopped_while_it_is_being_enqueued_is_cancelled_in_the_broker(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop (and the run's release) lands between the call being sealed and its
    enqueue: nothing to cancel in the broker yet, so `start_run` cancels it after."""
    broker = open_broker(url)
    real_enqueue = broker.enqueue
    runners: list[WorkerTaskRunner] = []
    enqueued: list[str] = []

    def enqueue(run_id: str, *args: Any, **kwargs: Any) -> None:
        assert runners[0].cancel_all() == 1  # the stop arrives now
        enqueued.append(run_id)
        real_enqueue(run_id, *args, **kwargs)

    monkeypatch.setattr(broker, "enqueue", enqueue)
    with WorkerTaskRunner(url) as runner:  # no worker: it would stay queued for good
        runners.append(runner)
        fut = wt.noop.submit(1)
        fut.wait(WAIT)
        assert fut.state.is_cancelled()
    assert [broker.status(run_id) for run_id in enqueued] == [RunStatus.CANCELLED]
