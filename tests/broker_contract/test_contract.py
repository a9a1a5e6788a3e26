"""The broker contract: every backend in backends.py passes every case here.

Time is the fixture's fake clock: a lease expires when the test advances it, so no
case sleeps. The rules are in asyncflow/_broker/_interface.py and _rules.py."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from asyncflow._broker import Broker, Delivery, Lease, RunStatus

from .backends import FakeClock

KEY, OTHER = "mod:task", "mod:other"
LEASE = 30.0


def enqueue(broker: Broker, *run_ids: str, key: str = KEY, max_deliveries: int = 3) -> None:
    for run_id in run_ids:
        broker.enqueue(run_id, key, f"payload-{run_id}".encode(), max_deliveries=max_deliveries)


def claim_one(broker: Broker, keys: tuple[str, ...] = (KEY,), worker: str = "w1") -> Delivery:
    (delivery,) = broker.claim(worker, keys, lease_seconds=LEASE, limit=1)
    return delivery


def ids(deliveries: list[Delivery]) -> list[str]:
    return [d.run_id for d in deliveries]


# -- enqueue and claim ------------------------------------------------------------------


def test_claim_hands_out_the_run_under_a_lease(broker: Broker) -> None:
    enqueue(broker, "r1")
    assert broker.status("r1") is RunStatus.QUEUED
    delivery = claim_one(broker)
    assert (delivery.run_id, delivery.task_key, delivery.payload) == ("r1", KEY, b"payload-r1")
    assert delivery.delivery == 1
    assert delivery.token
    assert broker.status("r1") is RunStatus.LEASED
    assert broker.claim("w2", [KEY], lease_seconds=LEASE, limit=5) == []  # not twice


def test_claim_is_oldest_first_and_respects_the_limit(broker: Broker) -> None:
    enqueue(broker, "a", "b")
    enqueue(broker, "c", key=OTHER)
    enqueue(broker, "d")
    assert ids(broker.claim("w", [KEY, OTHER], lease_seconds=LEASE, limit=3)) == ["a", "b", "c"]
    assert ids(broker.claim("w", [KEY, OTHER], lease_seconds=LEASE, limit=3)) == ["d"]
    assert broker.claim("w", [KEY, OTHER], lease_seconds=LEASE, limit=3) == []


def test_claim_filtered_by_task_key_leaves_other_keys_queued(broker: Broker) -> None:
    enqueue(broker, "mine")
    enqueue(broker, "theirs", key=OTHER)
    assert ids(broker.claim("w", [KEY, "mod:unknown"], lease_seconds=LEASE, limit=10)) == ["mine"]
    assert broker.status("theirs") is RunStatus.QUEUED
    assert broker.claim("w", [], lease_seconds=LEASE, limit=10) == []
    assert ids(broker.claim("w", [OTHER], lease_seconds=LEASE, limit=10)) == ["theirs"]


def test_claim_by_module_takes_every_key_of_that_module_only(broker: Broker) -> None:
    enqueue(broker, "a", key="jobs:resize")
    enqueue(broker, "b", key="jobs_old:resize")  # a module whose name extends "jobs"
    enqueue(broker, "c", key="jobs.sub:resize")  # a submodule is a module of its own
    enqueue(broker, "d", key="jobs:Class.method")
    enqueue(broker, "e", key="other:f")
    enqueue(broker, "f", key="jobs:renamed")
    got = broker.claim("w", [], lease_seconds=LEASE, limit=10, modules=["jobs"])
    assert ids(got) == ["a", "d", "f"]  # oldest first across the module's keys
    assert [d.task_key for d in got] == ["jobs:resize", "jobs:Class.method", "jobs:renamed"]
    assert all(broker.status(r) is RunStatus.QUEUED for r in "bce")
    assert broker.claim("w", [], lease_seconds=LEASE, limit=10, modules=["jobs"]) == []
    assert ids(broker.claim("w", [], lease_seconds=LEASE, limit=10, modules=["jobs.sub"])) == ["c"]


def test_claim_by_key_and_module_together_is_oldest_first_and_limited(broker: Broker) -> None:
    enqueue(broker, "a", key="n:f")
    enqueue(broker, "b", key=KEY)
    enqueue(broker, "c", key="n:g")
    enqueue(broker, "d", key=KEY)
    both = {"task_keys": [KEY, "n:f"], "modules": ["n"]}  # "n:f" is in both: once
    assert ids(broker.claim("w", lease_seconds=LEASE, limit=3, **both)) == ["a", "b", "c"]
    assert ids(broker.claim("w", lease_seconds=LEASE, limit=3, **both)) == ["d"]


def test_claim_any_key_takes_every_queued_run_oldest_first(broker: Broker) -> None:
    enqueue(broker, "a", key="z:f")
    enqueue(broker, "b", key="a:f")
    enqueue(broker, "c", key=KEY)
    delivery = claim_one(broker, keys=(KEY,))  # "c", held: not handed out twice
    assert delivery.run_id == "c"
    got = broker.claim("w", [], lease_seconds=LEASE, limit=1, any_key=True)
    assert ids(got) == ["a"]
    assert ids(broker.claim("w", [], lease_seconds=LEASE, limit=5, any_key=True)) == ["b"]
    assert broker.claim("w", [], lease_seconds=LEASE, limit=5, any_key=True) == []


def test_a_duplicate_run_id_is_an_error(broker: Broker) -> None:
    enqueue(broker, "r1")
    with pytest.raises(ValueError, match="'r1' exists already"):
        broker.enqueue("r1", OTHER, b"other", max_deliveries=1)
    delivery = claim_one(broker)
    assert (delivery.task_key, delivery.payload) == (KEY, b"payload-r1")  # the first one stays


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda b: b.enqueue("", KEY, b"p", max_deliveries=1), "run_id"),
        (lambda b: b.enqueue("r", "", b"p", max_deliveries=1), "task_key"),
        (lambda b: b.enqueue("r", KEY, b"p", max_deliveries=0), "max_deliveries"),
        (lambda b: b.claim("w", [KEY], lease_seconds=0, limit=1), "lease_seconds"),
        (lambda b: b.claim("w", [KEY], lease_seconds=float("inf"), limit=1), "lease_seconds"),
        (lambda b: b.claim("w", [KEY], lease_seconds=1, limit=0), "limit"),
        (lambda b: b.claim("", [KEY], lease_seconds=1, limit=1), "worker"),
        (lambda b: b.claim("w", [], lease_seconds=1, limit=1, modules=["m:f"]), "module"),
        (lambda b: b.claim("w", [], lease_seconds=1, limit=1, modules=[""]), "module"),
    ],
)
def test_bad_arguments_are_value_errors_naming_them(
    broker: Broker, call: Callable[[Broker], object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        call(broker)


def test_bad_argument_types_are_type_errors(broker: Broker) -> None:
    with pytest.raises(TypeError, match="payload"):
        broker.enqueue("r", KEY, "text", max_deliveries=1)  # type: ignore[arg-type]  # on purpose
    with pytest.raises(TypeError, match="task_keys"):
        broker.claim("w", KEY, lease_seconds=1, limit=1)
    with pytest.raises(TypeError, match="modules"):
        broker.claim("w", [], lease_seconds=1, limit=1, modules="mod")
    enqueue(broker, "r")
    with pytest.raises(TypeError, match="result"):
        broker.ack(claim_one(broker), "text")  # type: ignore[arg-type]  # on purpose


# -- renew, release, expiry ---------------------------------------------------------------


def test_renew_extends_a_held_lease(broker: Broker, clock: FakeClock) -> None:
    enqueue(broker, "r1")
    delivery = claim_one(broker)
    clock.advance(LEASE - 1)
    assert broker.renew(delivery, LEASE) is Lease.HELD
    clock.advance(LEASE - 1)  # past the first deadline, within the renewed one
    assert broker.claim("w2", [KEY], lease_seconds=LEASE, limit=1) == []
    assert broker.status("r1") is RunStatus.LEASED
    assert broker.ack(delivery, b"ok")


def test_an_expired_lease_is_redelivered_and_the_old_claim_is_lost(
    broker: Broker, clock: FakeClock
) -> None:
    enqueue(broker, "r1")
    first = claim_one(broker, worker="w1")
    clock.advance(LEASE)
    second = claim_one(broker, worker="w2")
    assert (second.run_id, second.delivery) == ("r1", 2)
    assert second.token != first.token
    assert broker.renew(first, LEASE) is Lease.LOST
    assert not broker.ack(first, b"late")  # the presumed-dead worker's result is dropped
    broker.dead_letter(first, "late")  # no-op: not held
    broker.release(first)  # no-op: not held
    assert broker.status("r1") is RunStatus.LEASED
    assert broker.ack(second, b"second")
    (outcome,) = broker.outcomes(["r1"])
    assert (outcome.result, outcome.deliveries) == (b"second", 2)


def test_an_overdue_lease_nobody_expired_yet_is_still_held(
    broker: Broker, clock: FakeClock
) -> None:
    enqueue(broker, "r1")
    delivery = claim_one(broker)
    clock.advance(LEASE * 2)
    assert broker.status("r1") is RunStatus.LEASED  # status never expires leases
    assert broker.ack(delivery, b"just in time")
    assert broker.claim("w2", [KEY], lease_seconds=LEASE, limit=1) == []


def test_release_requeues_in_place_without_counting_a_delivery(broker: Broker) -> None:
    enqueue(broker, "old", "new")
    old = claim_one(broker)
    broker.release(old)
    assert broker.status("old") is RunStatus.QUEUED
    assert broker.renew(old, LEASE) is Lease.LOST
    again = claim_one(broker)
    assert (again.run_id, again.delivery) == ("old", 1)


def test_max_deliveries_makes_the_run_dead_with_reason_and_count(
    broker: Broker, clock: FakeClock
) -> None:
    enqueue(broker, "r1", max_deliveries=2)
    assert claim_one(broker).delivery == 1
    clock.advance(LEASE)
    assert claim_one(broker).delivery == 2
    clock.advance(LEASE)
    assert broker.claim("w", [KEY], lease_seconds=LEASE, limit=1) == []
    assert broker.status("r1") is RunStatus.DEAD
    (outcome,) = broker.outcomes(["r1"])
    assert (outcome.status, outcome.deliveries, outcome.result) == (RunStatus.DEAD, 2, None)
    assert "delivery 2 of max_deliveries=2" in outcome.reason


def test_outcomes_expire_overdue_leases_without_a_worker(broker: Broker, clock: FakeClock) -> None:
    enqueue(broker, "r1", max_deliveries=1)
    claim_one(broker)
    assert broker.outcomes(["r1"]) == []
    clock.advance(LEASE)
    (outcome,) = broker.outcomes(["r1"])  # the submitter learns of the death itself
    assert (outcome.status, outcome.deliveries) == (RunStatus.DEAD, 1)


# -- ack, dead_letter -------------------------------------------------------------------


def test_first_ack_wins(broker: Broker) -> None:
    enqueue(broker, "r1")
    delivery = claim_one(broker)
    assert broker.ack(delivery, b"first")
    assert not broker.ack(delivery, b"second")
    assert broker.renew(delivery, LEASE) is Lease.LOST
    (outcome,) = broker.outcomes(["r1"])
    assert (outcome.status, outcome.result, outcome.reason) == (RunStatus.DONE, b"first", "")
    assert broker.status("r1") is RunStatus.DONE


def test_dead_letter_keeps_reason_and_deliveries(broker: Broker) -> None:
    enqueue(broker, "r1")
    delivery = claim_one(broker)
    broker.dead_letter(delivery, "signature check failed")
    assert not broker.ack(delivery, b"after")
    (outcome,) = broker.outcomes(["r1"])
    assert (outcome.run_id, outcome.task_key, outcome.status) == ("r1", KEY, RunStatus.DEAD)
    assert (outcome.reason, outcome.deliveries) == ("signature check failed", 1)


# -- cancel, status, outcomes -----------------------------------------------------------


def test_cancel_a_queued_run(broker: Broker) -> None:
    enqueue(broker, "r1", "r2")
    assert broker.cancel("r1") is RunStatus.QUEUED
    assert broker.status("r1") is RunStatus.CANCELLED
    assert ids(broker.claim("w", [KEY], lease_seconds=LEASE, limit=5)) == ["r2"]
    assert broker.cancel("r1") is RunStatus.CANCELLED  # final already: nothing changes
    assert broker.cancel("unknown") is None
    (outcome,) = broker.outcomes(["r1"])
    assert (outcome.status, outcome.deliveries) == (RunStatus.CANCELLED, 0)
    assert outcome.reason


def test_cancel_a_leased_run_asks_its_worker(broker: Broker) -> None:
    enqueue(broker, "r1")
    delivery = claim_one(broker)
    assert broker.cancel("r1") is RunStatus.LEASED  # the submitter learns a worker has it
    assert broker.status("r1") is RunStatus.LEASED
    assert broker.renew(delivery, LEASE) is Lease.CANCEL_REQUESTED
    assert broker.cancel("r1") is RunStatus.LEASED  # asked again: the same answer
    assert broker.ack(delivery, b"cancelled by the worker")  # the worker's answer is final
    assert broker.outcomes(["r1"])[0].status is RunStatus.DONE
    assert broker.cancel("r1") is RunStatus.DONE  # final: the outcome stands


@pytest.mark.parametrize("how", ["expiry", "release"])
def test_a_cancelled_leased_run_is_never_handed_out_again(
    broker: Broker, clock: FakeClock, how: str
) -> None:
    enqueue(broker, "r1")
    delivery = claim_one(broker)
    broker.cancel("r1")
    if how == "expiry":
        clock.advance(LEASE)
    else:
        broker.release(delivery)
    assert broker.claim("w", [KEY], lease_seconds=LEASE, limit=1) == []
    (outcome,) = broker.outcomes(["r1"])
    assert outcome.status is RunStatus.CANCELLED


def test_status_and_outcomes_of_unknown_and_unfinished_runs(broker: Broker) -> None:
    assert broker.status("nope") is None
    enqueue(broker, "a", "b", "c")
    claim_one(broker)  # a: leased
    assert broker.cancel("c") is RunStatus.QUEUED
    assert broker.outcomes([]) == []
    assert [o.run_id for o in broker.outcomes(["c", "nope", "a", "b", "c"])] == ["c"]


def test_outcomes_keep_the_callers_order(broker: Broker) -> None:
    names = [f"r{i}" for i in range(600)]  # more than one SQL `IN (...)` chunk
    enqueue(broker, *names)
    for name in names:
        broker.cancel(name)
    wanted = names[::-1]
    assert [o.run_id for o in broker.outcomes(wanted)] == wanted


# -- wait -------------------------------------------------------------------------------

WAIT = 10.0  # far longer than the join below: a wait that misses the change fails


@pytest.mark.timeout(20)
def test_wait_wakes_when_another_thread_changes_the_broker(broker: Broker) -> None:
    ready, returned = threading.Event(), threading.Event()

    def waiter() -> None:
        broker.claim("w", [KEY], lease_seconds=LEASE, limit=1)  # a call: the baseline
        broker.wait(0)  # spend any spurious wake-up owed to the first call
        ready.set()
        broker.wait(WAIT)
        returned.set()

    thread = threading.Thread(target=waiter, name="broker-waiter")
    thread.start()
    assert ready.wait(WAIT)
    enqueue(broker, "r1")
    thread.join(WAIT / 2)
    assert returned.is_set()


@pytest.mark.timeout(20)
def test_wait_sees_a_change_made_between_a_call_and_the_wait(broker: Broker) -> None:
    claimed, enqueued, returned = threading.Event(), threading.Event(), threading.Event()

    def waiter() -> None:
        assert broker.claim("w", [KEY], lease_seconds=LEASE, limit=1) == []
        claimed.set()
        assert enqueued.wait(WAIT)
        broker.wait(WAIT)  # the run queued after the claim: no lost wake-up
        returned.set()

    thread = threading.Thread(target=waiter, name="broker-waiter")
    thread.start()
    assert claimed.wait(WAIT)
    enqueue(broker, "r1")
    enqueued.set()
    thread.join(WAIT / 2)
    assert returned.is_set()


@pytest.mark.timeout(20)
def test_wait_times_out_when_nothing_changes(broker: Broker) -> None:
    returned = threading.Event()

    def waiter() -> None:
        broker.status("r1")
        broker.wait(0)
        broker.wait(0.05)
        returned.set()

    thread = threading.Thread(target=waiter, name="broker-waiter")
    thread.start()
    thread.join(WAIT / 2)
    assert returned.is_set()


# -- finished_since ---------------------------------------------------------------------


def test_the_feed_lists_runs_in_the_order_they_became_final(
    broker: Broker, clock: FakeClock
) -> None:
    enqueue(broker, "before")
    broker.cancel("before")
    empty, cursor = broker.finished_since(None)  # from now: "before" is history
    assert empty == []
    enqueue(broker, "acked", "dead", "expired", "released", "cancelled")
    enqueue(broker, "expired-2", max_deliveries=1)
    acked, dead, _, released = broker.claim("w", [KEY], lease_seconds=LEASE, limit=4)
    assert broker.ack(acked, b"value")
    broker.cancel("cancelled")
    broker.dead_letter(dead, "bad signature")
    broker.cancel("released")
    broker.release(released)
    broker.cancel("expired")  # leased: final once its lease expires
    (last,) = broker.claim("w", [KEY], lease_seconds=LEASE, limit=1)
    assert last.run_id == "expired-2"
    clock.advance(LEASE)
    first, cursor = broker.finished_since(cursor, limit=3)
    rest, cursor = broker.finished_since(cursor, limit=3)
    order = ["acked", "cancelled", "dead", "released", "expired", "expired-2"]
    assert [o.run_id for o in first + rest] == order
    statuses = [o.status for o in first + rest]
    assert statuses == [RunStatus.DONE] + [RunStatus.CANCELLED] + [RunStatus.DEAD] + [
        RunStatus.CANCELLED
    ] * 2 + [RunStatus.DEAD]
    assert first[0].result == b"value"
    assert broker.finished_since(cursor) == ([], cursor)  # nothing new
    enqueue(broker, "later")
    broker.cancel("later")
    (later,), _ = broker.finished_since(cursor)
    assert later.run_id == "later"
    assert broker.finished_since(None)[0] == []


@pytest.mark.parametrize(
    ("cursor", "limit", "match"),
    [(-1, 10, "cursor"), ("0", 10, "cursor"), (True, 10, "cursor"), (0, 0, "limit")],
)
def test_the_feed_refuses_bad_cursors(
    broker: Broker, cursor: object, limit: int, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        broker.finished_since(cursor, limit=limit)  # type: ignore[arg-type]  # on purpose


# -- purge ------------------------------------------------------------------------------


def test_purge_forgets_old_final_runs_and_keeps_the_rest(broker: Broker, clock: FakeClock) -> None:
    enqueue(broker, "old-done", "old-cancelled", "young", "leased", "queued")
    _, start = broker.finished_since(None)
    old_done = claim_one(broker)
    assert broker.ack(old_done, b"v")
    broker.cancel("old-cancelled")
    clock.advance(10)
    broker.cancel("young")
    claim_one(broker)  # "leased": never purged, however old
    clock.advance(5)
    assert broker.purge(older_than=15) == 2  # finished 15 s ago: "at least", inclusive
    assert broker.status("old-done") is None
    assert broker.status("old-cancelled") is None
    assert broker.outcomes(["old-done", "young"])[0].run_id == "young"
    assert broker.status("leased") is RunStatus.LEASED
    assert broker.status("queued") is RunStatus.QUEUED
    feed, cursor = broker.finished_since(start)  # the cursor from before stays valid
    assert [o.run_id for o in feed] == ["young"]
    broker.cancel("queued")
    assert [o.run_id for o in broker.finished_since(cursor)[0]] == ["queued"]
    enqueue(broker, "old-done")  # a purged id may be used again
    assert broker.status("old-done") is RunStatus.QUEUED


def test_purge_keeps_the_newest_final_run(broker: Broker, clock: FakeClock) -> None:
    enqueue(broker, "a", "b")
    broker.cancel("a")
    broker.cancel("b")
    clock.advance(100)
    assert broker.purge(older_than=0) == 1
    assert broker.status("b") is RunStatus.CANCELLED
    _, cursor = broker.finished_since(None)
    enqueue(broker, "c")
    broker.cancel("c")
    assert [o.run_id for o in broker.finished_since(cursor)[0]] == ["c"]  # not skipped


@pytest.mark.parametrize("older_than", [-1, float("nan"), float("inf"), "1"])
def test_purge_refuses_bad_ages(broker: Broker, older_than: object) -> None:
    with pytest.raises(ValueError, match="older_than"):
        broker.purge(older_than)  # type: ignore[arg-type]  # on purpose
