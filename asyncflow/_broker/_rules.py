"""The broker rules every backend shares: argument checks and what an expired or
released lease turns a run into.

Backends keep their own storage (dicts, SQL rows) but take each decision here, so the
memory and SQLite brokers cannot drift apart on a rule; the contract suite
(tests/broker_contract/) checks that they do not.

The precise rules, beyond the state machine in `_interface`:

- A lease is *held* while the run is LEASED under that claim's token. An overdue lease
  that nobody has expired yet is still held: its worker may renew it or ack. Expiry is
  applied by `claim` and `outcomes` (every backend, every call), never by `status`,
  `renew`, `ack`, `release` or `dead_letter`.
- An expired (or released) lease of a run whose cancel was requested makes it
  CANCELLED: no worker takes a run that its submitter cancelled.
- An expired lease of a run that has had `max_deliveries` deliveries makes it DEAD;
  otherwise the run is QUEUED again, in its original place (oldest first).
- `claim` with no task keys, no modules and not `any_key` claims nothing (but still
  expires overdue leases). A module matches the keys `"module:..."` exactly (module
  `m` matches `m:f`, not `mm:f` nor `m.sub:f`); a module name is non-empty and has
  no ":".
- Runs whose leases expire in one call become final, for `finished_since`, in
  enqueue order.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection

from ._interface import RunStatus

__all__ = (
    "CANCELLED_QUEUED",
    "check_claim",
    "check_enqueue",
    "check_feed",
    "check_lease_seconds",
    "check_purge",
    "dead_letter_reason",
    "key_module",
    "new_token",
    "on_expiry",
    "on_release",
)

CANCELLED_QUEUED = "cancelled before a worker took it"
CANCELLED_LEASED = "cancelled while a worker held it"


def new_token() -> str:
    """A claim's lease token: 128 random bits (os.urandom: no uuid import)."""
    return os.urandom(16).hex()


def check_enqueue(run_id: str, task_key: str, payload: bytes, max_deliveries: int) -> None:
    if not isinstance(run_id, str) or not run_id:
        raise ValueError(f"run_id must be a non-empty str, got {run_id!r}")
    if not isinstance(task_key, str) or not task_key:
        raise ValueError(f"task_key for run {run_id!r} must be a non-empty str, got {task_key!r}")
    if not isinstance(payload, bytes):
        raise TypeError(f"payload for run {run_id!r} must be bytes, got {type(payload).__name__}")
    if isinstance(max_deliveries, bool) or not isinstance(max_deliveries, int):
        raise TypeError(f"max_deliveries for run {run_id!r} must be an int, got {max_deliveries!r}")
    if max_deliveries < 1:
        raise ValueError(f"max_deliveries for run {run_id!r} must be >= 1, got {max_deliveries}")


def check_lease_seconds(lease_seconds: float) -> None:
    if (
        isinstance(lease_seconds, bool)
        or not isinstance(lease_seconds, (int, float))
        or not math.isfinite(lease_seconds)
        or lease_seconds <= 0
    ):
        raise ValueError(f"lease_seconds must be a finite number > 0, got {lease_seconds!r}")


def check_claim(
    worker: str,
    task_keys: Collection[str],
    lease_seconds: float,
    limit: int,
    modules: Collection[str] = (),
) -> None:
    if not isinstance(worker, str) or not worker:
        raise ValueError(f"worker must be a non-empty str, got {worker!r}")
    if isinstance(task_keys, str):
        raise TypeError(f"task_keys must be a collection of str, not the str {task_keys!r}")
    if isinstance(modules, str):
        raise TypeError(f"modules must be a collection of str, not the str {modules!r}")
    for module in modules:
        if not isinstance(module, str) or not module or ":" in module:
            raise ValueError(f"a module to claim is a non-empty name without ':', got {module!r}")
    check_lease_seconds(lease_seconds)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be an int >= 1, got {limit!r}")


def key_module(task_key: str) -> str:
    """The module part of a task key (`"m.sub:f"` -> `"m.sub"`)."""
    return task_key.partition(":")[0]


def check_purge(older_than: float) -> None:
    if (
        isinstance(older_than, bool)
        or not isinstance(older_than, (int, float))
        or not math.isfinite(older_than)
        or older_than < 0
    ):
        raise ValueError(f"older_than must be a finite number of seconds >= 0, got {older_than!r}")


def check_feed(cursor: int | None, limit: int) -> None:
    if cursor is not None and (
        isinstance(cursor, bool) or not isinstance(cursor, int) or cursor < 0
    ):
        raise ValueError(f"cursor must be None or an int >= 0 from finished_since, got {cursor!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be an int >= 1, got {limit!r}")


def dead_letter_reason(deliveries: int, max_deliveries: int) -> str:
    return (
        f"lease expired on delivery {deliveries} of max_deliveries={max_deliveries} "
        "(each worker that took it died or stopped renewing its lease)"
    )


def on_expiry(
    deliveries: int, max_deliveries: int, cancel_requested: bool
) -> tuple[RunStatus, str]:
    """What a run whose lease expired becomes, and why (reason "" if QUEUED)."""
    if cancel_requested:
        return RunStatus.CANCELLED, CANCELLED_LEASED
    if deliveries >= max_deliveries:
        return RunStatus.DEAD, dead_letter_reason(deliveries, max_deliveries)
    return RunStatus.QUEUED, ""


def on_release(cancel_requested: bool) -> tuple[RunStatus, str]:
    """What a run its worker handed back becomes (its delivery is not counted)."""
    if cancel_requested:
        return RunStatus.CANCELLED, CANCELLED_LEASED
    return RunStatus.QUEUED, ""
