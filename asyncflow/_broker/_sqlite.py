"""`SQLiteBroker`: the embedded, default broker, one SQLite file that several
submitter and worker processes on one machine share.

Design:

- One table, `runs`, one row per run until `purge` (the dead-letter record is the
  row with status 'dead': run id, task key, deliveries, reason). Partial indexes keep
  the hot queries off the finished rows: queued runs by (task key, enqueue order)
  for `claim` (a claim by module walks that index's key ranges: see `_key_ranges`),
  leased runs by deadline for lease expiry, and final runs by
  `finish_seq` (1, 2, 3... in the order they finished, numbered under the write
  lock from the newest existing one) for `finished_since`. A test checks that no
  statement scans the table.
- WAL journal (readers never block the writer), `synchronous=NORMAL` by default (a
  killed process loses nothing; a power loss may roll back the last transactions,
  which at-least-once delivery redoes; pass `synchronous="FULL"` to fsync every
  commit), and a busy timeout, so a writer waits for another process's transaction.
- Every change runs in a `BEGIN IMMEDIATE` transaction: it takes the write lock
  before reading, so two processes cannot both claim a run or both ack one. Calls that
  usually find nothing to change (an idle worker's `claim`, a submitter's `outcomes`)
  look first in a plain read and take the write lock only when there is work.
- One connection per thread (`threading.local`), opened on first use: sqlite3
  connections are not to be shared between threads without a lock, and a
  per-thread connection is what makes `PRAGMA data_version` useful (it changes when
  *another* connection commits). `benchmarks/broker.py` measures it against one
  shared connection behind a lock. The threads of one process take a per-file
  `threading.Lock` around their write transactions, so they queue on it (handed
  over at once) rather than on SQLite's lock, whose busy handler sleeps 1 ms and
  more; between processes, that busy handler is measured to do better than a
  finer retry loop (each hand-over of the lock costs the new holder its page
  cache, so fewer, longer turns win). A connection opened before `fork()` is
  never used in the child (each connection remembers its pid).
- `wait(timeout)` polls `PRAGMA data_version` (it reads the WAL index in shared
  memory: no disk I/O, tens of microseconds) with a backoff from 0.5 ms to 20 ms.
  The version each thread saw at the start of its last call is the baseline, so a
  change committed between an empty `claim` and the `wait` that follows is never
  missed. Commits from this process also notify a `threading.Condition` per file,
  which ends the waiters' current sleep at once.
- Time (lease deadlines) comes from the injectable `clock`, wall-clock seconds, since
  processes compare deadlines; `wait` times out on the monotonic clock.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _rules
from ._interface import Delivery, Lease, Outcome, RunStatus

__all__ = ("SQLiteBroker",)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY,  -- enqueue order (rows are never deleted, so never reused)
    run_id TEXT NOT NULL UNIQUE,
    task_key TEXT NOT NULL,
    payload BLOB NOT NULL,
    status TEXT NOT NULL,
    max_deliveries INTEGER NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    token TEXT,
    lease_until REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    result BLOB,
    reason TEXT NOT NULL DEFAULT '',
    enqueued_at REAL NOT NULL,
    finished_at REAL,
    finish_seq INTEGER  -- the order runs became final in (finished_since)
);
CREATE INDEX IF NOT EXISTS runs_queued ON runs (task_key, seq) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS runs_leased ON runs (lease_until) WHERE status = 'leased';
CREATE INDEX IF NOT EXISTS runs_finished ON runs (finish_seq) WHERE finish_seq IS NOT NULL;
"""
# The newest finish_seq: a reverse step of the index, where MAX() with the partial
# index's WHERE would scan it.
LAST_FINISH = (
    "SELECT finish_seq FROM runs WHERE finish_seq IS NOT NULL ORDER BY finish_seq DESC LIMIT 1"
)
FINAL = tuple(s.value for s in RunStatus if s.is_final)
IN_CHUNK = 500  # ids per `IN (...)`: below every SQLite build's variable limit
POLL_FIRST = 0.0005
POLL_CAP = 0.02


@dataclass
class _File:
    """What this process's brokers on one database file share: a writer lock (threads
    of this process queue on it instead of on SQLite's lock) and a condition that
    every commit notifies (it ends this process's waiters' poll sleep)."""

    writer: threading.Lock = field(default_factory=threading.Lock)
    changes: threading.Condition = field(default_factory=lambda: threading.Condition())


_files: dict[str, _File] = {}
_files_lock = threading.Lock()


def _file(path: str) -> _File:
    with _files_lock:
        return _files.setdefault(path, _File())


def _reset_after_fork() -> None:
    # A lock another thread held at fork() would stay held in the child forever.
    global _files_lock
    _files.clear()
    _files_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def _key_ranges(modules: Collection[str], any_key: bool) -> list[tuple[str, str | None]]:
    """The task-key ranges a claim by module covers: "m:" <= key < "m;" (";" follows
    ":" in byte order: the keys of module m and nothing else); every key if
    `any_key`. Ranges, not LIKE, so that SQLite searches the queued-runs index."""
    if any_key:
        return [("", None)]
    return [(f"{module}:", f"{module};") for module in sorted(set(modules))]


class _ThreadState(threading.local):
    conn: sqlite3.Connection | None = None
    pid = 0
    seen_version = -1  # data_version at the start of this thread's last call


class SQLiteBroker:
    """See the module docstring. `path` is the database file (created if missing,
    readable and writable by the user only)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 30.0,
        synchronous: str = "NORMAL",
    ) -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be NORMAL, FULL, EXTRA or OFF, got {synchronous!r}")
        self.path = Path(os.path.abspath(path))
        self.url = f"sqlite:///{self.path}"
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._synchronous = synchronous.upper()
        self._state = _ThreadState()
        self._conns: dict[threading.Thread, sqlite3.Connection] = {}
        self._conns_lock = threading.Lock()
        self._owner_pid = os.getpid()  # the process whose connections `_conns` holds
        self._closed = False
        self._create_file()
        try:
            with self._write() as conn:
                self._migrate(conn)
        except BaseException:  # a schema it refuses, say: leave no connection open
            self.close()
            raise

    def __repr__(self) -> str:
        return f"<SQLiteBroker {self.url!r}>"

    # -- connections and transactions -------------------------------------------------

    def _create_file(self) -> None:
        try:  # mode 0600: payloads and results are the user's data
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            pass

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread=False only so that close() may close every thread's
        # connection; each connection is otherwise used by its own thread alone.
        # SQLite's busy handler waits for another process's write lock (see the
        # module docstring for why not a finer retry loop).
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        return conn

    def _conn(self) -> sqlite3.Connection:
        state = self._state
        if state.conn is not None and state.pid == os.getpid():
            if self._closed:
                raise RuntimeError(f"{self!r} is closed")
            return state.conn
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        conn = self._connect()
        with self._conns_lock:
            self._prune_dead_threads()
            self._conns[threading.current_thread()] = conn
        state.conn, state.pid, state.seen_version = conn, os.getpid(), -1
        return conn

    def _prune_dead_threads(self) -> None:
        if self._owner_pid != os.getpid():  # inherited through fork(): never touch them
            self._conns, self._owner_pid = {}, os.getpid()
        for thread in [t for t in self._conns if not t.is_alive()]:
            self._conns.pop(thread).close()

    def _note_version(self, conn: sqlite3.Connection) -> None:
        """Note the baseline the next `wait` of this thread compares against."""
        self._state.seen_version = conn.execute("PRAGMA data_version").fetchone()[0]

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        shared = _file(str(self.path))
        before = conn.total_changes
        with shared.writer:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Read under the write lock: no other commit can land until ours, and
                # any after ours changes it (our own commits do not).
                self._note_version(conn)
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        if conn.total_changes != before:
            with shared.changes:
                shared.changes.notify_all()

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """The rows of one query outside a transaction."""
        return self._conn().execute(sql, params).fetchall()

    def _note_read_version(self) -> None:
        """The baseline for reads outside a transaction: taken before them, so a
        commit that lands after it wakes the next `wait`."""
        self._note_version(self._conn())

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path} has broker schema version {version}; this asyncflow knows "
                f"version {SCHEMA_VERSION} (upgrade asyncflow)"
            )
        if version < SCHEMA_VERSION:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # -- lease expiry -----------------------------------------------------------------

    def _any_overdue(self, now: float) -> bool:
        query = "SELECT 1 FROM runs WHERE status = 'leased' AND lease_until <= ? LIMIT 1"
        return bool(self._read(query, (now,)))

    def _expire_overdue(self, conn: sqlite3.Connection, now: float) -> None:
        overdue = conn.execute(
            "SELECT seq, deliveries, max_deliveries, cancel_requested FROM runs"
            " WHERE status = 'leased' AND lease_until <= ?",  # no ORDER BY: it would scan
            (now,),
        ).fetchall()
        for seq, deliveries, max_deliveries, cancel_requested in sorted(overdue):  # by seq
            status, reason = _rules.on_expiry(deliveries, max_deliveries, bool(cancel_requested))
            self._unlease(conn, seq, status, reason, now)

    def _unlease(
        self, conn: sqlite3.Connection, seq: int, status: RunStatus, reason: str, now: float
    ) -> None:
        """Take the lease off run `seq`, leaving it `status` (QUEUED, or final)."""
        final = status.is_final
        conn.execute(
            "UPDATE runs SET status = ?, reason = ?, finished_at = ?, finish_seq = ?,"
            " worker = NULL, token = NULL, lease_until = NULL WHERE seq = ?",
            (status.value, reason, now if final else None, self._next_finish(conn, final), seq),
        )

    @staticmethod
    def _last_finish(rows: list[Any]) -> int:
        return int(rows[0][0]) if rows else 0

    def _next_finish(self, conn: sqlite3.Connection, final: bool = True) -> int | None:
        """The next `finish_seq` (under the write lock: no other writer can take it)."""
        if not final:
            return None
        return self._last_finish(conn.execute(LAST_FINISH).fetchall()) + 1

    # -- the Broker protocol ----------------------------------------------------------

    def enqueue(self, run_id: str, task_key: str, payload: bytes, *, max_deliveries: int) -> None:
        _rules.check_enqueue(run_id, task_key, payload, max_deliveries)
        try:
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO runs (run_id, task_key, payload, status, max_deliveries,"
                    " enqueued_at) VALUES (?, ?, ?, 'queued', ?, ?)",
                    (run_id, task_key, payload, max_deliveries, self._clock()),
                )
        except sqlite3.IntegrityError:
            raise ValueError(f"run id {run_id!r} exists already in {self.url}") from None

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
        keys = sorted(set(task_keys))
        ranges = _key_ranges(modules, any_key)
        if not self._claim_may_change(keys, ranges):
            return []
        with self._write() as conn:
            now = self._clock()
            self._expire_overdue(conn, now)
            for low, high in ranges:  # the keys with queued runs in each module
                keys += self._queued_keys(conn, low, high)
            rows: set[tuple[Any, ...]] = set()
            for key in set(keys):  # one indexed range per key, merged: no sort of the queue
                rows.update(
                    conn.execute(
                        "SELECT seq, run_id, task_key, payload, deliveries FROM runs"
                        " WHERE status = 'queued' AND task_key = ? ORDER BY seq LIMIT ?",
                        (key, limit),
                    ).fetchall()
                )
            oldest = sorted(rows)[:limit]
            claimed = [
                Delivery(run_id, key, payload, deliveries + 1, _rules.new_token())
                for _, run_id, key, payload, deliveries in oldest
            ]
            conn.executemany(
                "UPDATE runs SET status = 'leased', worker = ?, token = ?, lease_until = ?,"
                " deliveries = deliveries + 1 WHERE seq = ?",
                [
                    (worker, delivery.token, now + lease_seconds, row[0])
                    for delivery, row in zip(claimed, oldest, strict=True)
                ],
            )
            return claimed

    @staticmethod
    def _queued_keys(conn: sqlite3.Connection, low: str, high: str | None) -> list[str]:
        """The distinct task keys with queued runs in [low, high) (high None: no
        bound), one index step each: O(keys log runs), however many runs are queued."""
        below = "" if high is None else " AND task_key < ?"
        found: list[str] = []
        op = ">="
        while True:
            row = conn.execute(
                f"SELECT task_key FROM runs WHERE status = 'queued' AND task_key {op} ?{below}"
                " ORDER BY task_key LIMIT 1",
                (low,) if high is None else (low, high),
            ).fetchone()
            if row is None:
                return found
            low, op = row[0], ">"
            found.append(low)

    def _claim_may_change(self, keys: list[str], ranges: list[tuple[str, str | None]]) -> bool:
        """A read (no write lock): is anything queued for these keys, or overdue?"""
        self._note_read_version()
        marks = ",".join("?" * len(keys))
        query = f"SELECT 1 FROM runs WHERE status = 'queued' AND task_key IN ({marks}) LIMIT 1"
        if keys and self._read(query, keys):
            return True
        for low, high in ranges:
            below, params = ("", (low,)) if high is None else (" AND task_key < ?", (low, high))
            query = f"SELECT 1 FROM runs WHERE status = 'queued' AND task_key >= ?{below} LIMIT 1"
            if self._read(query, params):
                return True
        return self._any_overdue(self._clock())

    def _held(self, conn: sqlite3.Connection, delivery: Delivery) -> tuple[int, int] | None:
        """(seq, cancel_requested) of the run if this claim still holds it."""
        row: tuple[int, int] | None = conn.execute(
            "SELECT seq, cancel_requested FROM runs"
            " WHERE run_id = ? AND status = 'leased' AND token = ?",
            (delivery.run_id, delivery.token),
        ).fetchone()
        return row

    def renew(self, delivery: Delivery, lease_seconds: float) -> Lease:
        _rules.check_lease_seconds(lease_seconds)
        with self._write() as conn:
            held = self._held(conn, delivery)
            if held is None:
                return Lease.LOST
            seq, cancel_requested = held
            until = self._clock() + lease_seconds
            conn.execute("UPDATE runs SET lease_until = ? WHERE seq = ?", (until, seq))
            return Lease.CANCEL_REQUESTED if cancel_requested else Lease.HELD

    def release(self, delivery: Delivery) -> None:
        with self._write() as conn:
            held = self._held(conn, delivery)
            if held is None:
                return
            seq, cancel_requested = held
            conn.execute("UPDATE runs SET deliveries = deliveries - 1 WHERE seq = ?", (seq,))
            status, reason = _rules.on_release(bool(cancel_requested))
            self._unlease(conn, seq, status, reason, self._clock())

    def ack(self, delivery: Delivery, result: bytes) -> bool:
        if not isinstance(result, bytes):
            raise TypeError(f"result for run {delivery.run_id!r} must be bytes")
        return self._finish_held(delivery, RunStatus.DONE, "", result)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._finish_held(delivery, RunStatus.DEAD, reason, None)

    def _finish_held(
        self, delivery: Delivery, status: RunStatus, reason: str, result: bytes | None
    ) -> bool:
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE runs SET status = ?, reason = ?, result = ?, finished_at = ?,"
                " finish_seq = ?, worker = NULL, token = NULL, lease_until = NULL"
                " WHERE run_id = ? AND status = 'leased' AND token = ?",
                (
                    status.value,
                    reason,
                    result,
                    self._clock(),
                    self._next_finish(conn),
                    delivery.run_id,
                    delivery.token,
                ),
            )
            return cursor.rowcount == 1

    def cancel(self, run_id: str) -> RunStatus | None:
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE runs SET status = 'cancelled', reason = ?, finished_at = ?,"
                " finish_seq = ? WHERE run_id = ? AND status = 'queued'",
                (_rules.CANCELLED_QUEUED, self._clock(), self._next_finish(conn), run_id),
            )
            if cursor.rowcount == 1:
                return RunStatus.QUEUED
            cursor = conn.execute(
                "UPDATE runs SET cancel_requested = 1 WHERE run_id = ? AND status = 'leased'",
                (run_id,),
            )
            if cursor.rowcount == 1:
                return RunStatus.LEASED
            found = conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchall()
            return RunStatus(found[0][0]) if found else None

    def status(self, run_id: str) -> RunStatus | None:
        self._note_read_version()
        rows = self._read("SELECT status FROM runs WHERE run_id = ?", (run_id,))
        return RunStatus(rows[0][0]) if rows else None

    def _expire_if_overdue(self) -> None:
        """For the readers: a plain read first; the write lock only if there is work."""
        self._note_read_version()
        if self._any_overdue(self._clock()):
            with self._write() as conn:
                self._expire_overdue(conn, self._clock())

    def outcomes(self, run_ids: Collection[str]) -> list[Outcome]:
        ids = list(dict.fromkeys(run_ids))
        self._expire_if_overdue()
        found: dict[str, Outcome] = {}
        final = ",".join(f"'{status}'" for status in FINAL)
        for start in range(0, len(ids), IN_CHUNK):
            chunk = ids[start : start + IN_CHUNK]
            rows = self._read(
                "SELECT run_id, task_key, status, result, reason, deliveries FROM runs"
                f" WHERE run_id IN ({','.join('?' * len(chunk))}) AND status IN ({final})",
                chunk,
            )
            for run_id, key, status, result, reason, deliveries in rows:
                found[run_id] = Outcome(run_id, key, RunStatus(status), result, reason, deliveries)
        return [found[run_id] for run_id in ids if run_id in found]

    def finished_since(self, cursor: int | None, *, limit: int = 1000) -> tuple[list[Outcome], int]:
        _rules.check_feed(cursor, limit)
        self._expire_if_overdue()
        if cursor is None:
            return [], self._last_finish(self._read(LAST_FINISH))
        rows = self._read(
            "SELECT run_id, task_key, status, result, reason, deliveries, finish_seq FROM runs"
            " WHERE finish_seq > ? ORDER BY finish_seq LIMIT ?",
            (cursor, limit),
        )
        outcomes = [Outcome(r[0], r[1], RunStatus(r[2]), r[3], r[4], r[5]) for r in rows]
        return outcomes, rows[-1][6] if rows else cursor

    def purge(self, older_than: float) -> int:
        _rules.check_purge(older_than)
        with self._write() as conn:
            newest = self._last_finish(conn.execute(LAST_FINISH).fetchall())
            cursor = conn.execute(
                "DELETE FROM runs WHERE finish_seq < ? AND finished_at <= ?",
                (newest, self._clock() - older_than),
            )
            return cursor.rowcount

    def wait(self, timeout: float) -> None:
        state = self._state
        deadline = time.monotonic() + max(0.0, timeout)
        interval = POLL_FIRST
        while True:
            version = self._read("PRAGMA data_version")[0][0]
            remaining = deadline - time.monotonic()
            if version != state.seen_version or remaining <= 0:
                state.seen_version = version
                return
            changes = _file(str(self.path)).changes
            with changes:  # a commit in this process ends the sleep at once
                changes.wait(min(interval, remaining))
            interval = min(interval * 2, POLL_CAP)

    def close(self) -> None:
        with self._conns_lock:
            self._closed = True
            inherited = self._owner_pid != os.getpid()
            conns = [] if inherited else list(self._conns.values())
            self._conns = {}
        for conn in conns:
            conn.close()
        changes = _file(str(self.path)).changes
        with changes:
            changes.notify_all()
