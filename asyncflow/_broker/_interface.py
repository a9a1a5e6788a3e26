"""The broker interface: the one piece that task submitters and task workers share.

A broker is a durable queue of *runs* with leases. It stores each run as opaque bytes
(a signed envelope made by `asyncflow._broker._signing`; the broker never unpickles
anything) and knows nothing of tasks, retries or asyncflow's states. Every backend
(SQLite, in-memory, later Redis Streams) implements `Broker`, and one contract suite
(tests/broker_contract/) runs against each of them.

A run's life in the broker:

    enqueue          claim              ack(result)
    ------> QUEUED -------> LEASED -------------------> DONE      (first ack wins)
              ^                |  lease expires, or
              +----------------+  release() (shutdown)
              |                |
              |  deliveries == max_deliveries and the lease expires
              |                +--------------------------------> DEAD
    cancel(): QUEUED -> CANCELLED at once; LEASED -> cancel requested (renew says so);
              it answers which it found
    dead_letter(): LEASED -> DEAD (a message that failed its signature check, say)

- `claim` hands a QUEUED run to one worker under a lease (`lease_seconds` from now) and
  counts a delivery. It matches runs by exact task key, by module (`modules=["m"]`
  matches every key `"m:..."`, so a worker serving a whole module also sees the
  messages for tasks that module no longer has), or every key (`any_key=True`).
  `release` hands it back without counting one (a worker shutting down that never
  started the run).
- A lease that expires (its worker died or stopped) puts the run back in the queue, or
  makes it DEAD once it has had `max_deliveries` deliveries. Expiry is checked by every
  `claim` and every `outcomes` call, so it needs no background process of its own.
- `ack` stores the result of a LEASED run and makes it DONE. Exactly one result is ever
  visible per run: a second `ack` (a worker presumed dead, whose lease was taken over)
  returns False and stores nothing.
- `finished_since` is the order in which runs became final; a cursor is an int that
  only this broker interprets (a durable backend's stays valid across processes
  and restarts).
- Time is wall-clock seconds from the broker's `clock` (injectable for tests), because
  several processes compare lease deadlines.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol


class RunStatus(enum.Enum):
    QUEUED = "queued"
    LEASED = "leased"
    DONE = "done"  # a worker stored a result (value or failure: the bytes say which)
    DEAD = "dead"  # dead-lettered: too many deliveries, or a message that failed its check
    CANCELLED = "cancelled"  # cancelled before any worker took it

    @property
    def is_final(self) -> bool:
        return self in (RunStatus.DONE, RunStatus.DEAD, RunStatus.CANCELLED)


class Lease(enum.Enum):
    """What `renew` found."""

    HELD = "held"  # still ours, extended
    LOST = "lost"  # expired and taken over, or the run is final: drop the work
    CANCEL_REQUESTED = "cancel"  # still ours (extended), but the submitter cancelled it


@dataclass(frozen=True)
class Delivery:
    """One run as `claim` hands it to a worker."""

    run_id: str
    task_key: str  # "module:qualname"
    payload: bytes  # the signed envelope from `enqueue`
    delivery: int  # 1 for the first delivery of this run
    token: str  # this claim's lease token: renew/ack/release/dead_letter need it


@dataclass(frozen=True)
class Outcome:
    """A run that is final in the broker."""

    run_id: str
    task_key: str
    status: RunStatus  # DONE, DEAD or CANCELLED
    result: bytes | None  # DONE: the signed result bytes the worker acked
    reason: str  # DEAD / CANCELLED: why, in words ("" for DONE)
    deliveries: int


class Broker(Protocol):
    """See the module docstring. Every method is safe to call from any thread."""

    url: str

    def enqueue(self, run_id: str, task_key: str, payload: bytes, *, max_deliveries: int) -> None:
        """Queue a new run (a `run_id` that exists already is a `ValueError`)."""

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
        """Up to `limit` queued runs, oldest first, leased to `worker`: the runs whose
        task key is in `task_keys` or whose key's module (before the ":") is in
        `modules`, or every run if `any_key`; [] when there are none (never blocks:
        see `wait`)."""
        ...

    def renew(self, delivery: Delivery, lease_seconds: float) -> Lease:
        """Extend this claim's lease to `lease_seconds` from now, if still held."""
        ...

    def release(self, delivery: Delivery) -> None:
        """Hand a held run back to the queue; its delivery is not counted."""

    def ack(self, delivery: Delivery, result: bytes) -> bool:
        """Store the result and make the run DONE; False (stored nothing) if the run is
        final already or the lease was taken over by another claim."""
        ...

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Make a held run DEAD with `reason` (no-op if the lease is no longer held)."""

    def cancel(self, run_id: str) -> RunStatus | None:
        """Cancel the run; returns the status it found. QUEUED: it is CANCELLED now
        and no worker will take it. LEASED: a worker holds it and is asked (renew
        answers CANCEL_REQUESTED). A final status: nothing changes (its outcome is
        there to read). None: the broker never saw it. The answer is atomic, so a
        submitter learns whether a worker took the run before its cancel arrived."""
        ...

    def status(self, run_id: str) -> RunStatus | None:
        """The run's status, None if the broker never saw it."""
        ...

    def outcomes(self, run_ids: Collection[str]) -> list[Outcome]:
        """The final ones among `run_ids` (expiring overdue leases first)."""
        ...

    def finished_since(self, cursor: int | None, *, limit: int = 1000) -> tuple[list[Outcome], int]:
        """A feed of runs as they become final: those that did after `cursor`, in that
        order, at most `limit`, and the cursor to pass next (expiring overdue leases
        first). `cursor=None` means "from now": ([], the current cursor). A submitter
        with many runs in flight follows the feed instead of asking `outcomes` for all
        of them after every change; it takes its first cursor before it enqueues."""
        ...

    def purge(self, older_than: float) -> int:
        """Forget the runs that became final at least `older_than` seconds ago (by the
        broker's clock): their records and outcomes are gone (`status` says None).
        Queued and leased runs are never purged, nor the newest final run (it anchors
        the feed, whose cursors stay valid). Returns how many runs were removed."""
        ...

    def wait(self, timeout: float) -> None:
        """Block until the broker may have changed (a run enqueued, acked, cancelled...)
        or `timeout` seconds passed; spurious wake-ups are allowed."""

    def close(self) -> None:
        """Release connections; the data stays (for a durable backend)."""
