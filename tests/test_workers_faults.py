"""Task workers under faults: every run ends in a final state, none is lost, and the
one visible result of each run is the first one written.

Workers are processes of the CLI on a SQLite broker (`SubprocessWorkers`, leases of
1 s, a supervisor restarting dead workers); faults are signals sent to them. Orders
are gates and tallies (files), never sleeps."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import workers_tasks as wt
from helpers import WAIT, FileGate, Tally
from workers_support import SubprocessWorkers, catches_sigterm, peek

from asyncflow import exceptions, task_worker
from asyncflow._broker import RunStatus

pytestmark = pytest.mark.timeout(60)


def wait_until(condition: Any, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)  # polling files and states, bounded by the deadline


def test_sigkill_mid_task_redelivers_to_another_worker(tmp_path: Path) -> None:
    tally, release = Tally(tmp_path / "calls"), FileGate(tmp_path / "release")
    with SubprocessWorkers(2, processes=2) as runner:
        fut = wt.hold.submit(tally, release)
        wait_until(lambda: len(tally) == 1)
        first = int(tally.lines()[0])
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: len(tally) == 2)  # the lease expired; another worker took it
        second = int(tally.lines()[1])
        assert second != first
        release.open()
        assert fut.result(timeout=WAIT) == second
        (outcome,) = peek(runner.broker_url, "outcomes", [task_worker.run_id(fut)])
        assert (outcome.status, outcome.deliveries) == (RunStatus.DONE, 2)


def test_a_worker_stopped_past_its_lease_loses_its_result(tmp_path: Path) -> None:
    tally, done = Tally(tmp_path / "calls"), Tally(tmp_path / "done")
    release = FileGate(tmp_path / "release")
    with SubprocessWorkers(2, processes=2) as runner:
        fut = wt.hold_then_mark.submit(tally, release, done)
        wait_until(lambda: len(tally) == 1)
        stopped = int(tally.lines()[0])
        os.kill(stopped, signal.SIGSTOP)
        try:
            wait_until(lambda: len(tally) == 2)  # taken over after the lease expired
            taker = int(tally.lines()[1])
            release.open()
            assert fut.result(timeout=WAIT) == taker
        finally:
            os.kill(stopped, signal.SIGCONT)
        wait_until(lambda: len(done) == 2)  # the stopped one ran to its end too...
        rid = task_worker.run_id(fut)
        again = task_worker.future(rid, broker=runner.broker_url)
        assert again.result(timeout=WAIT) == taker  # ...but its late result was dropped
        assert sorted(int(p) for p in done.lines()) == sorted([stopped, taker])


def test_a_task_that_kills_its_worker_every_time_is_dead_lettered(tmp_path: Path) -> None:
    tally = Tally(tmp_path / "calls")
    with SubprocessWorkers(1) as runner:
        fut = wt.kill_worker.submit(tally)
        with pytest.raises(exceptions.TaskCrashed) as info:
            fut.result(timeout=3 * WAIT)
        assert fut.state.is_crashed()
        rid = task_worker.run_id(fut)
        message = str(info.value)
        assert "'kill_worker'" in message
        assert rid in message
        assert "3 deliveries" in message
        assert runner.restarts >= 3
    assert len(tally) == 3  # max_deliveries, then never again


@pytest.mark.fault
@pytest.mark.timeout(180)
def test_a_thousand_runs_while_workers_are_killed_every_200_ms(tmp_path: Path) -> None:
    tally = Tally(tmp_path / "calls")
    stop = threading.Event()
    kills = []
    with SubprocessWorkers(30, processes=3, max_deliveries=20) as runner:

        def killer() -> None:
            rng = random.Random(1234)
            while not stop.wait(0.2):  # the fault's own rhythm: a kill every 200 ms
                victim = rng.choice(runner.workers)
                # Only a worker that got as far as serving (its CLI handles SIGTERM):
                # on a loaded machine a restart can take longer than the kills' rhythm,
                # and killing workers still starting would leave none ever serving.
                if victim.poll() is None and catches_sigterm(victim.pid):
                    victim.kill()
                    kills.append(victim.pid)

        thread = threading.Thread(target=killer, name="tests-killer")
        thread.start()
        try:
            futures = wt.numbered.map(range(1000), tally)
            results = futures.result(timeout=150)
        finally:
            stop.set()
            thread.join()
        assert results == list(range(1000))  # 0 lost
        ids = [task_worker.run_id(f) for f in futures]
        outcomes = peek(runner.broker_url, "outcomes", ids)
        assert len(outcomes) == 1000
        assert {o.status for o in outcomes} == {RunStatus.DONE}
        # The one visible result of each run is the one every process reads.
        rebuilt = [task_worker.future(rid, broker=runner.broker_url) for rid in ids[:50]]
        assert [f.result(timeout=WAIT) for f in rebuilt] == list(range(50))
    assert kills, "the driver killed no worker"
    executed = [int(line) for line in tally.lines()]
    assert set(executed) == set(range(1000))  # every run executed at least once
