"""Every backend against a reference model, driven by hypothesis.

The model is a dict of runs written from the rules in `_interface` and `_rules`
(restated here, not imported: the test would otherwise check the rules against
themselves). Hypothesis interleaves enqueues, claims, renewals, releases, acks,
dead-letters, cancels and clock moves, and after each step every run's status must
match; every call's answer (claimed runs and their delivery numbers, renew's Lease,
ack's bool, cancel's answer, outcomes, the finished_since feed) is compared as it happens.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
)

from asyncflow._broker import Broker, Delivery, Lease, RunStatus

from .backends import BACKENDS, FakeClock

KEYS = ("m:a", "m:b", "mm:c", "m.x:d")  # modules "m", "mm" and "m.x": prefixes of "m"
MODULES = ("m", "mm", "m.x", "z")


@dataclass
class ModelRun:
    seq: int
    key: str
    max_deliveries: int
    status: RunStatus = RunStatus.QUEUED
    deliveries: int = 0
    token: str | None = None
    lease_until: float = 0.0
    cancel_requested: bool = False
    result: bytes | None = None
    finished_at: float = 0.0


class BrokerMachine(RuleBasedStateMachine):
    backend = ""
    deliveries = Bundle("deliveries")

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="broker-sm-"))
        self.clock = FakeClock()
        self.broker: Broker = BACKENDS[self.backend](self.tmp, self.clock)
        self.runs: dict[str, ModelRun] = {}
        self.enqueued = 0
        self.finished: list[str] = []  # the order runs became final in
        self.feed_pos = 0  # in self.finished: after what finished_since listed last
        self.cursor = self.broker.finished_since(None)[1]

    def teardown(self) -> None:
        self.broker.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the model's rules ----------------------------------------------------------

    def expire(self) -> None:
        for run_id, run in self.runs.items():  # in enqueue order
            if run.status is RunStatus.LEASED and run.lease_until <= self.clock.now:
                run.token = None
                if run.cancel_requested:
                    self.finish(run_id, RunStatus.CANCELLED)
                elif run.deliveries >= run.max_deliveries:
                    self.finish(run_id, RunStatus.DEAD)
                else:
                    run.status = RunStatus.QUEUED

    def finish(self, run_id: str, status: RunStatus) -> None:
        self.runs[run_id].status = status
        self.runs[run_id].finished_at = self.clock.now
        self.finished.append(run_id)

    def held(self, delivery: Delivery) -> ModelRun | None:
        run = self.runs.get(delivery.run_id)  # None: purged
        if run is not None and run.status is RunStatus.LEASED and run.token == delivery.token:
            return run
        return None

    # -- steps --------------------------------------------------------------------------

    @rule(key=st.sampled_from(KEYS), max_deliveries=st.integers(1, 3))
    def enqueue(self, key: str, max_deliveries: int) -> None:
        self.enqueued += 1
        run_id = f"r{self.enqueued}"
        self.broker.enqueue(run_id, key, run_id.encode(), max_deliveries=max_deliveries)
        self.runs[run_id] = ModelRun(self.enqueued, key, max_deliveries)

    @precondition(lambda self: bool(self.runs))
    @rule(data=st.data())
    def enqueue_a_duplicate(self, data: st.DataObject) -> None:
        run_id = data.draw(st.sampled_from(sorted(self.runs)))
        with pytest.raises(ValueError, match="exists already"):
            self.broker.enqueue(run_id, KEYS[0], b"dup", max_deliveries=1)

    @rule(
        target=deliveries,
        keys=st.sets(st.sampled_from(KEYS), max_size=3),
        limit=st.integers(1, 3),
        lease=st.sampled_from([1.0, 5.0, 30.0]),
        modules=st.sets(st.sampled_from(MODULES), max_size=2),
        any_key=st.sampled_from([False, False, False, True]),
    )
    def claim(
        self, keys: set[str], limit: int, lease: float, modules: set[str], any_key: bool
    ) -> object:
        got = self.broker.claim(
            "w", keys, lease_seconds=lease, limit=limit, modules=modules, any_key=any_key
        )
        self.expire()

        def wanted(key: str) -> bool:
            return any_key or key in keys or key.split(":")[0] in modules

        queued = sorted(
            (run.seq, run_id)
            for run_id, run in self.runs.items()
            if run.status is RunStatus.QUEUED and wanted(run.key)
        )
        expected = [run_id for _, run_id in queued[:limit]]
        assert [d.run_id for d in got] == expected
        for delivery in got:
            run = self.runs[delivery.run_id]
            run.status, run.token = RunStatus.LEASED, delivery.token
            run.deliveries += 1
            run.lease_until = self.clock.now + lease
            assert (delivery.delivery, delivery.task_key) == (run.deliveries, run.key)
            assert delivery.payload == delivery.run_id.encode()
        return multiple(*got)

    @rule(delivery=deliveries, lease=st.sampled_from([1.0, 5.0, 30.0]))
    def renew(self, delivery: Delivery, lease: float) -> None:
        answer = self.broker.renew(delivery, lease)
        run = self.held(delivery)
        if run is None:
            assert answer is Lease.LOST
            return
        run.lease_until = self.clock.now + lease
        assert answer is (Lease.CANCEL_REQUESTED if run.cancel_requested else Lease.HELD)

    @rule(delivery=deliveries)
    def release(self, delivery: Delivery) -> None:
        self.broker.release(delivery)
        run = self.held(delivery)
        if run is not None:
            run.token = None
            run.deliveries -= 1
            if run.cancel_requested:
                self.finish(delivery.run_id, RunStatus.CANCELLED)
            else:
                run.status = RunStatus.QUEUED

    @rule(delivery=deliveries)
    def ack(self, delivery: Delivery) -> None:
        result = f"result of {delivery.token}".encode()
        acked = self.broker.ack(delivery, result)
        run = self.held(delivery)
        assert acked == (run is not None)
        if run is not None:
            run.token, run.result = None, result
            self.finish(delivery.run_id, RunStatus.DONE)

    @rule(delivery=deliveries)
    def dead_letter(self, delivery: Delivery) -> None:
        self.broker.dead_letter(delivery, "bad signature")
        run = self.held(delivery)
        if run is not None:
            run.token = None
            self.finish(delivery.run_id, RunStatus.DEAD)

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        run_id = data.draw(st.sampled_from([*sorted(self.runs), "unknown"]))
        found = self.broker.cancel(run_id)
        run = self.runs.get(run_id)
        if run is None:
            assert found is None
        elif run.status.is_final:
            assert found is run.status
        elif run.status is RunStatus.QUEUED:
            assert found is RunStatus.QUEUED
            self.finish(run_id, RunStatus.CANCELLED)
        else:
            assert found is RunStatus.LEASED
            run.cancel_requested = True

    @rule(seconds=st.sampled_from([0.5, 1.0, 4.0, 30.0]))
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def outcomes(self) -> None:
        got = self.broker.outcomes([*self.runs, "unknown"])
        self.expire()
        expected = [run_id for run_id, run in self.runs.items() if run.status.is_final]
        assert [o.run_id for o in got] == expected
        for outcome in got:
            run = self.runs[outcome.run_id]
            assert (outcome.status, outcome.deliveries) == (run.status, run.deliveries)
            assert outcome.task_key == run.key
            assert outcome.result == run.result
            assert bool(outcome.reason) == (run.status is not RunStatus.DONE)

    @rule(limit=st.integers(1, 4))
    def follow_the_feed(self, limit: int) -> None:
        got, self.cursor = self.broker.finished_since(self.cursor, limit=limit)
        self.expire()
        ahead = [run_id for run_id in self.finished[self.feed_pos :] if run_id in self.runs]
        assert [o.run_id for o in got] == ahead[:limit]  # purged runs are skipped
        for outcome in got:
            assert outcome.status is self.runs[outcome.run_id].status
        if got:
            self.feed_pos = self.finished.index(got[-1].run_id) + 1

    @rule(older_than=st.sampled_from([0.0, 1.0, 5.0]))
    def purge(self, older_than: float) -> None:
        removed = self.broker.purge(older_than)
        newest = self.finished[-1] if self.finished else None
        old = [
            run_id
            for run_id, run in self.runs.items()
            if run.status.is_final
            and run.finished_at <= self.clock.now - older_than
            and run_id != newest
        ]
        assert removed == len(old)
        for run_id in old:
            del self.runs[run_id]

    @invariant()
    def every_status_matches(self) -> None:
        for run_id, run in self.runs.items():
            assert self.broker.status(run_id) is run.status, run_id


class MemoryMachine(BrokerMachine):
    backend = "memory"


class SQLiteMachine(BrokerMachine):
    backend = "sqlite"


# No deadline and no too_slow check: the machine shares 2 cores with other test runs.
RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
TestMemoryBroker = MemoryMachine.TestCase
TestMemoryBroker.settings = settings(RELAXED, max_examples=100, stateful_step_count=30)
TestSQLiteBroker = SQLiteMachine.TestCase
TestSQLiteBroker.settings = settings(RELAXED, max_examples=50, stateful_step_count=30)
