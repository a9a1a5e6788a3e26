"""The lease per runner: `WorkerTaskRunner(lease_seconds=...)` travels in the call;
the worker renews the claim to it right after decoding the call, then at a third of
it while the run executes. A call without one keeps the worker's `lease_seconds`.

The worker's own lease here is long (30 s): any renewal seen within a test comes from
the call's lease. Renewals are observed on the broker, waited for with events."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import workers_tasks as wt
from helpers import WAIT, FileGate, Tally
from workers_support import ThreadWorker, start_worker_process, stop_worker_process

from asyncflow._broker import Delivery, Lease, open_broker
from asyncflow._taskworkers import WorkerTaskRunner
from asyncflow._taskworkers._wire import CALL_TAG_V1, Call, decode_call, encode_call
from asyncflow._taskworkers._worker import DEFAULT_LEASE_SECONDS

pytestmark = pytest.mark.timeout(30)


class RenewSpy:
    """Records every `renew` of the broker at `url`; `enough` is set at `count`."""

    def __init__(self, url: str, monkeypatch: pytest.MonkeyPatch, count: int) -> None:
        broker = open_broker(url)  # the process's one memory broker of that name
        self.renewals: list[tuple[str, float]] = []
        self.enough = threading.Event()
        real = broker.renew

        def renew(delivery: Delivery, lease_seconds: float) -> Lease:
            self.renewals.append((delivery.run_id, lease_seconds))
            if len(self.renewals) >= count:
                self.enough.set()
            return real(delivery, lease_seconds)

        monkeypatch.setattr(broker, "renew", renew)


@pytest.fixture
def url() -> str:
    return f"memory://test-{uuid.uuid4().hex}"


def test_the_runners_lease_is_renewed_at_once_then_every_third(
    url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spy = RenewSpy(url, monkeypatch, count=4)
    gate = FileGate(tmp_path / "gate")
    with ThreadWorker(url, wt.hold, lease_seconds=30.0) as worker:
        assert worker.lease_seconds == 30.0
        with WorkerTaskRunner(url, lease_seconds=0.3):
            fut = wt.hold.submit(Tally(tmp_path / "t"), gate)
            assert spy.enough.wait(WAIT)  # four renewals while the run holds the gate
            gate.open()
            fut.result(timeout=WAIT)
    leases = [lease for _, lease in spy.renewals]
    assert leases[:4] == [0.3] * 4  # never the worker's 30 s


def test_a_call_without_a_lease_keeps_the_workers(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = RenewSpy(url, monkeypatch, count=1)
    with ThreadWorker(url, wt.noop, lease_seconds=30.0), WorkerTaskRunner(url) as runner:
        assert runner.lease_seconds is None
        assert wt.noop.submit(3).result(timeout=WAIT) == 3
    assert spy.renewals == []  # no renewal right after the claim: 30 s is due in 10 s


def test_lease_seconds_is_checked_and_duplicated(url: str) -> None:
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="lease_seconds"):
            WorkerTaskRunner(url, lease_seconds=bad)
    assert WorkerTaskRunner(url, lease_seconds=2).duplicate().lease_seconds == 2.0
    assert DEFAULT_LEASE_SECONDS == 30.0


def test_the_call_carries_the_lease_and_old_calls_still_decode() -> None:
    call = decode_call(encode_call(Call("m:f", "f", None, {"x": 1}, 2.5)))
    assert (call.key, call.parameters, call.lease_seconds) == ("m:f", {"x": 1}, 2.5)
    import pickle

    old = decode_call(pickle.dumps((CALL_TAG_V1, "m:f", "f", None, {"x": 1})))
    assert (old.key, old.parameters, old.lease_seconds) == ("m:f", {"x": 1}, None)
    with pytest.raises(ValueError, match="not an asyncflow call"):
        decode_call(pickle.dumps(("other", 1)))


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)  # polling a file, bounded by the deadline


@pytest.mark.fault
@pytest.mark.timeout(60)
def test_a_dead_workers_run_comes_back_after_the_runners_lease(tmp_path: Path) -> None:
    """Workers with a 60 s lease; the runner's is 1 s: a SIGKILLed worker's run is
    handed to the other worker within WAIT, not after a minute."""
    url = f"sqlite:///{tmp_path}/broker.db"
    tally, release = Tally(tmp_path / "calls"), FileGate(tmp_path / "release")
    procs = [start_worker_process(url, 1, "workers_tasks", lease=60.0) for _ in range(2)]
    first = 0
    try:
        with WorkerTaskRunner(url, lease_seconds=1.0):
            fut = wt.hold.submit(tally, release)
            _wait_until(lambda: len(tally) == 1)
            first = int(tally.lines()[0])
            os.kill(first, signal.SIGKILL)
            _wait_until(lambda: len(tally) == 2)
            second = int(tally.lines()[1])
            assert second != first
            release.open()
            assert fut.result(timeout=WAIT) == second
    finally:
        for proc in procs:
            if proc.pid == first:
                proc.wait(WAIT)
            else:
                assert stop_worker_process(proc) == 0
