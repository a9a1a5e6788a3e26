"""`MemoryBroker`: the broker in one process's memory, for tests and notebooks.

`memory://name` names one instance per process (`open_broker` keeps a registry), so a
submitter and an in-process worker that open the same URL share it; `MemoryBroker()`
built directly is private to its holder. Nothing survives the process, and a named
broker lives as long as the process (`close` does not forget it: another holder in
the process may still use it), so tests give each broker its own name.

Runs live in a dict; each task key has a heap of its queued runs ordered by enqueue
sequence (a claim by module, or of any key, takes from the heaps of the keys that
match), with lazy deletion (a cancelled or claimed run's entry is skipped when it
surfaces), so a claim costs O(limit log n). Leased runs are also kept in a set, which
`claim`, `outcomes` and `finished_since` scan for overdue leases, and the ids of
final runs in a list in the order they finished: the feed's cursor is an index into
it (purged runs leave their slot, skipped). One `threading.Condition` guards it all;
every change bumps a version and notifies it, and each thread remembers the version
it last saw, so `wait` returns at once if anything changed since that thread's last
call (no lost wake-up between an empty `claim` and `wait`).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from . import _rules
from ._interface import Delivery, Lease, Outcome, RunStatus

__all__ = ("MemoryBroker",)


@dataclass
class _Run:
    seq: int
    run_id: str
    task_key: str
    payload: bytes
    max_deliveries: int
    status: RunStatus = RunStatus.QUEUED
    deliveries: int = 0
    token: str | None = None
    lease_until: float = 0.0
    cancel_requested: bool = False
    result: bytes | None = None
    reason: str = ""
    finished_at: float = 0.0
    worker: str | None = field(default=None, repr=False)


def _outcome(run: _Run) -> Outcome:
    return Outcome(run.run_id, run.task_key, run.status, run.result, run.reason, run.deliveries)


class _SeenVersion(threading.local):
    version = -1


class MemoryBroker:
    """See the module docstring; `clock` returns wall-clock seconds."""

    def __init__(self, name: str = "", *, clock: Callable[[], float] = time.time) -> None:
        self.url = f"memory://{name}"
        self.name = name
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._runs: dict[str, _Run] = {}
        self._queued: dict[str, list[tuple[int, str]]] = {}  # task key -> heap of (seq, id)
        self._leased: set[str] = set()
        self._finished: list[str] = []  # run ids in the order they became final
        self._seq = 0
        self._version = 0
        self._seen = _SeenVersion()

    def __repr__(self) -> str:
        return f"<MemoryBroker {self.url!r}>"

    # -- helpers, called with the condition held ------------------------------------

    def _changed(self) -> None:
        self._version += 1
        self._seen.version = self._version
        self._cond.notify_all()

    def _observe(self) -> None:
        self._seen.version = self._version

    def _push(self, run: _Run) -> None:
        heapq.heappush(self._queued.setdefault(run.task_key, []), (run.seq, run.run_id))

    def _unlease(self, run: _Run, status: RunStatus, reason: str) -> None:
        self._leased.discard(run.run_id)
        run.token = run.worker = None
        if status is RunStatus.QUEUED:
            run.status, run.reason = status, reason
            self._push(run)
        else:
            self._finish(run, status, reason)

    def _finish(self, run: _Run, status: RunStatus, reason: str) -> None:
        run.status, run.reason, run.finished_at = status, reason, self._clock()
        self._finished.append(run.run_id)

    def _expire_overdue(self) -> bool:
        now = self._clock()
        leased = (self._runs[run_id] for run_id in self._leased)
        overdue = sorted((r for r in leased if r.lease_until <= now), key=lambda r: r.seq)
        for run in overdue:
            self._unlease(
                run, *_rules.on_expiry(run.deliveries, run.max_deliveries, run.cancel_requested)
            )
        return bool(overdue)

    def _expire_and_mark(self) -> None:
        if self._expire_overdue():
            self._changed()
        else:
            self._observe()

    def _held(self, delivery: Delivery) -> _Run | None:
        run = self._runs.get(delivery.run_id)
        if run is None or run.status is not RunStatus.LEASED or run.token != delivery.token:
            return None
        return run

    def _pop_queued(self, task_key: str) -> _Run | None:
        heap = self._queued.get(task_key)
        while heap:
            seq, run_id = heapq.heappop(heap)
            run = self._runs.get(run_id)  # None: a cancelled run, purged since
            if run is not None and run.status is RunStatus.QUEUED and run.seq == seq:
                return run
        return None

    def _peek_seq(self, task_key: str) -> int | None:
        heap = self._queued.get(task_key)
        while heap:
            seq, run_id = heap[0]
            run = self._runs.get(run_id)
            if run is not None and run.status is RunStatus.QUEUED:
                return seq
            heapq.heappop(heap)  # a cancelled run's stale entry
        return None

    def _matching_keys(self, keys: set[str], modules: set[str], any_key: bool) -> set[str]:
        """The task keys with queued runs that a claim for these patterns takes from
        (one pass over the keys that ever had a queue: there are few)."""
        if not modules and not any_key:
            return keys
        return keys | {key for key in self._queued if any_key or _rules.key_module(key) in modules}

    # -- the Broker protocol ----------------------------------------------------------

    def enqueue(self, run_id: str, task_key: str, payload: bytes, *, max_deliveries: int) -> None:
        _rules.check_enqueue(run_id, task_key, payload, max_deliveries)
        with self._cond:
            if run_id in self._runs:
                raise ValueError(f"run id {run_id!r} exists already in {self.url}")
            self._seq += 1
            run = _Run(self._seq, run_id, task_key, payload, max_deliveries)
            self._runs[run_id] = run
            self._push(run)
            self._changed()

    def claim(
        self,
        worker: str,
        task_keys: Collection[str],
        *,
        lease_seconds: float,
        limit: int,
        modules: Collection[str] = (),
        any_key: bool = False,
    ) -> list[Delivery]:
        _rules.check_claim(worker, task_keys, lease_seconds, limit, modules)
        with self._cond:
            changed = self._expire_overdue()
            keys = self._matching_keys(set(task_keys), set(modules), any_key)
            claimed: list[Delivery] = []
            until = self._clock() + lease_seconds
            while len(claimed) < limit:
                heads = [(seq, key) for key in keys if (seq := self._peek_seq(key)) is not None]
                if not heads:
                    break
                run = self._pop_queued(min(heads)[1])
                assert run is not None  # _peek_seq just saw it queued
                run.status, run.worker, run.lease_until = RunStatus.LEASED, worker, until
                run.token = _rules.new_token()
                run.deliveries += 1
                self._leased.add(run.run_id)
                claimed.append(
                    Delivery(run.run_id, run.task_key, run.payload, run.deliveries, run.token)
                )
            if changed or claimed:
                self._changed()
            else:
                self._observe()
            return claimed

    def renew(self, delivery: Delivery, lease_seconds: float) -> Lease:
        _rules.check_lease_seconds(lease_seconds)
        with self._cond:
            self._observe()
            run = self._held(delivery)
            if run is None:
                return Lease.LOST
            run.lease_until = self._clock() + lease_seconds
            return Lease.CANCEL_REQUESTED if run.cancel_requested else Lease.HELD

    def release(self, delivery: Delivery) -> None:
        with self._cond:
            run = self._held(delivery)
            if run is None:
                self._observe()
                return
            run.deliveries -= 1
            self._unlease(run, *_rules.on_release(run.cancel_requested))
            self._changed()

    def ack(self, delivery: Delivery, result: bytes) -> bool:
        if not isinstance(result, bytes):
            raise TypeError(f"result for run {delivery.run_id!r} must be bytes")
        with self._cond:
            run = self._held(delivery)
            if run is None:
                self._observe()
                return False
            run.result = result
            self._unlease(run, RunStatus.DONE, "")
            self._changed()
            return True

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        with self._cond:
            run = self._held(delivery)
            if run is None:
                self._observe()
                return
            self._unlease(run, RunStatus.DEAD, reason)
            self._changed()

    def cancel(self, run_id: str) -> RunStatus | None:
        with self._cond:
            run = self._runs.get(run_id)
            if run is None or run.status.is_final:
                self._observe()
                return None if run is None else run.status
            found = run.status
            if found is RunStatus.QUEUED:
                self._finish(run, RunStatus.CANCELLED, _rules.CANCELLED_QUEUED)
            else:
                run.cancel_requested = True
            self._changed()
            return found

    def status(self, run_id: str) -> RunStatus | None:
        with self._cond:
            self._observe()
            run = self._runs.get(run_id)
            return None if run is None else run.status

    def outcomes(self, run_ids: Collection[str]) -> list[Outcome]:
        with self._cond:
            self._expire_and_mark()
            found = (self._runs.get(run_id) for run_id in dict.fromkeys(run_ids))
            return [_outcome(run) for run in found if run is not None and run.status.is_final]

    def finished_since(self, cursor: int | None, *, limit: int = 1000) -> tuple[list[Outcome], int]:
        _rules.check_feed(cursor, limit)
        with self._cond:
            self._expire_and_mark()
            if cursor is None:
                return [], len(self._finished)
            found: list[Outcome] = []
            while cursor < len(self._finished) and len(found) < limit:
                run = self._runs.get(self._finished[cursor])  # None: purged
                cursor += 1
                if run is not None:
                    found.append(_outcome(run))
            return found, cursor

    def purge(self, older_than: float) -> int:
        _rules.check_purge(older_than)
        with self._cond:
            self._observe()
            cutoff = self._clock() - older_than
            newest = self._finished[-1] if self._finished else None
            old = [
                run_id
                for run_id, run in self._runs.items()
                if run.status.is_final and run.finished_at <= cutoff and run_id != newest
            ]
            for run_id in old:
                del self._runs[run_id]
            return len(old)

    def wait(self, timeout: float) -> None:
        with self._cond:
            seen = self._seen.version
            self._cond.wait_for(lambda: self._version != seen, timeout)
            self._observe()

    def close(self) -> None:
        with self._cond:
            self._cond.notify_all()  # nothing to release; wake waiters so they look again
