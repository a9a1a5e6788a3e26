"""The submitter's watcher follows the broker's feed (`finished_since`): a wake-up
costs the runs that finished since the last one, not a look at every run in flight;
`outcomes` is asked only for futures rebuilt from a run id, once (their run may have
finished before the watcher's cursor)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Collection
from typing import Any

import pytest
import workers_tasks as wt
from helpers import WAIT
from workers_support import ThreadWorker

from asyncflow import task_worker
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
