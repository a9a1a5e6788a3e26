"""Workers forget runs that have been final for longer than `keep_results_seconds`, so
a broker that serves for months does not grow without bound (the purge itself is the
broker contract's `purge`, tested there). The broker's clock is a fake one: a day
passes when the test says so."""

from __future__ import annotations

import uuid

import pytest
import workers_tasks as wt
from broker_contract.backends import FakeClock
from helpers import WAIT
from workers_support import ThreadWorker

from asyncflow._broker import RunStatus, open_broker
from asyncflow._taskworkers import TaskWorker, WorkerTaskRunner
from asyncflow._taskworkers._cli import _parser
from asyncflow._taskworkers._worker import purge_interval

pytestmark = pytest.mark.timeout(30)
DAY = 86400.0


def _finished_runs(url: str, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Two runs final two days ago and one final now, on the broker at `url`."""
    broker = open_broker(url)  # the process's one memory broker of that name
    clock = FakeClock()
    monkeypatch.setattr(broker, "_clock", clock)
    for run_id in ("old-1", "old-2"):
        broker.enqueue(run_id, "mod:gone", b"x", max_deliveries=1)
        broker.cancel(run_id)
    clock.advance(2 * DAY)
    broker.enqueue("young", "mod:gone", b"x", max_deliveries=1)
    broker.cancel("young")
    return clock


@pytest.mark.parametrize("keep", [DAY, None])
def test_a_worker_forgets_runs_final_for_longer_than_it_keeps_them(
    monkeypatch: pytest.MonkeyPatch, keep: float | None
) -> None:
    url = f"memory://purge-{uuid.uuid4().hex}"
    _finished_runs(url, monkeypatch)
    with ThreadWorker(url, wt.noop, keep_results_seconds=keep), WorkerTaskRunner(url):
        # The worker purges before its first claim: once this run is done, it has.
        assert wt.noop.submit(3).result(timeout=WAIT) == 3
    broker = open_broker(url)
    old = [broker.status(run_id) for run_id in ("old-1", "old-2")]
    assert old == ([None, None] if keep else [RunStatus.CANCELLED] * 2)
    assert broker.status("young") is RunStatus.CANCELLED  # final for less than a day


@pytest.mark.parametrize("keep", [0, -1.0, "1"])
def test_keep_results_seconds_must_be_positive_or_none(keep: object) -> None:
    with pytest.raises(ValueError, match="keep_results_seconds must be > 0 or None"):
        TaskWorker([wt.noop], "memory://", keep_results_seconds=keep)  # type: ignore[arg-type]  # on purpose


def test_the_cli_option_and_the_purge_interval() -> None:
    parse = _parser().parse_args
    assert parse(["worker", "m:t"]).keep_results == DAY
    assert parse(["worker", "m:t", "--keep-results", "60"]).keep_results == 60.0
    assert parse(["worker", "m:t", "--keep-results", "0"]).keep_results is None  # for good
    assert [purge_interval(s) for s in (5, 600, DAY, 30 * DAY)] == [1.0, 60.0, 3600.0, 3600.0]
