"""What runs inside a `ProcessPoolTaskRunner` worker process, and the wire format.

A worker owns one duplex pipe to its parent. It receives a batch (a pickled list of
calls: one call for a `.submit()`, many for a `.map`) and runs them one after the
other. Results go back together, when the batch is done or every `FLUSH_SECONDS` of
it, so many small calls cost few messages.

Shared cells (`cells`, one small array per worker) tell the parent what the worker
does without a message per call:

- `PROGRESS`: 1 + the id of the call running, or 0 between calls. When a worker dies,
  the parent reads it to charge the death to the one call that was running; the
  batch's other calls go to another worker (ones that had finished but whose results
  died with the worker are run again).
- `STARTED`: how many calls of this worker have started (or been skipped). The parent
  polls it to report a run Running only once it really runs.
- `CANCELS`: how many "skip" notices the parent has written to the pipe.

Before each call the worker takes its `gate` lock, reads any new skip notices, and
either skips the call (it was cancelled before it started) or claims it by bumping
`STARTED`. The parent cancels a call under the same lock: if `STARTED` has not
reached it, it writes a skip notice and the call never runs; else the call is
running (the worker is killed) or done. So a cancelled run that has not started
never executes and never costs another run its worker.

Messages, parent -> worker: `pickle([(run_id, fn_key, fn_entry | None, call_bytes,
is_async), ...])` where `fn_entry` is `(task_name, fn_bytes)` the first time this
worker sees that function; `pickle(seq)`, a skip notice (read only as `CANCELS`
says); or `b""` to stop. Worker -> parent: `pickle([(run_id, kind, payload), ...])`,
payload being the pickled value (kind OK), the pickled `(exception,
traceback_text)` (kind ERROR), or empty (kind SKIPPED); or, once and last,
`pickle(error_bytes)` (bytes, not a list): the runner's initializer failed.

The initializer (`ProcessPoolTaskRunner(initializer=, initargs=)`) arrives pickled
with the worker's arguments and runs once, when the worker starts, before it reads
its first batch (as in `concurrent.futures`). If it raises (or cannot be unpickled
here), the worker says why and exits without running anything: the parent counts
that as a failed start (see `_process_pool`), so a broken initializer ends the runs
that waited for it instead of restarting workers for ever.

Values cross with `pickle` when they can (fast) and with cloudpickle otherwise
(closures, lambdas, classes defined in `__main__` or inside functions).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from .._core import RemoteError, SerializationError, awaitable_result, consume_generator

__all__ = (
    "CANCELS",
    "KIND_ERROR",
    "KIND_OK",
    "KIND_SKIPPED",
    "PROGRESS",
    "STARTED",
    "dumps",
    "encode_error",
    "serialization_error",
    "worker_main",
)

FLUSH_SECONDS = 0.005
KIND_OK = 0
KIND_ERROR = 1
KIND_SKIPPED = 2  # cancelled before it started: never ran
PROGRESS, STARTED, CANCELS = 0, 1, 2  # indexes of the shared cells


def dumps(value: Any) -> bytes:
    """Pickle `value`: the C pickler first; cloudpickle when that fails or when the
    pickle refers to `__main__` by name (the worker's `__main__` is another module)."""
    try:
        data = pickle.dumps(value, protocol=5)
    except Exception:
        data = b"__main__"  # fall through to cloudpickle
    if b"__main__" in data:
        import cloudpickle  # only for values the C pickler cannot carry

        data = cloudpickle.dumps(value, protocol=5)
    return data


def encode_error(exc: BaseException) -> bytes:
    """Pickle `(exc, traceback text)`; an exception that does not survive the round
    trip is replaced by a `RemoteError` carrying its type name and message."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        data = dumps((exc, text))
        pickle.loads(data)  # some exceptions pickle but cannot be rebuilt: check here
    except BaseException:  # even a reducer calling sys.exit() must not stop the worker
        wrapper = RemoteError(type(exc).__qualname__, str(exc), text)
        data = pickle.dumps((wrapper, text), protocol=5)
    return data


def serialization_error(name: str, what: str, exc: BaseException) -> SerializationError:
    """What crossing a process failed at, for task `name`: `what`, then why."""
    return SerializationError(f"task {name!r}: {what}: {type(exc).__name__}: {exc}")


def _serialization_error(name: str, what: str, exc: BaseException) -> bytes:
    return encode_error(serialization_error(name, what, exc))


class _Function:
    """A task's function as this worker loaded it (or why it could not)."""

    __slots__ = ("error", "fn", "name")

    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.fn: Any = None
        self.error: bytes | None = None
        try:
            self.fn = pickle.loads(data)
        except BaseException as exc:  # e.g. it refers to a module the worker cannot import
            what = "its function could not be unpickled in the worker process"
            self.error = _serialization_error(name, what, exc)


def _run_one(
    fn: _Function, call_bytes: bytes, is_async: bool, loop: asyncio.AbstractEventLoop | None
) -> tuple[int, bytes, asyncio.AbstractEventLoop | None]:
    if fn.error is not None:
        return KIND_ERROR, fn.error, loop
    try:
        args, kwargs = pickle.loads(call_bytes)
    except BaseException as exc:  # a reducer may raise anything, even SystemExit
        what = "its arguments could not be unpickled in the worker process"
        return KIND_ERROR, _serialization_error(fn.name, what, exc), loop
    try:
        value = fn.fn(*args, **kwargs)
        if is_async:
            if loop is None:
                loop = asyncio.new_event_loop()  # one per worker, reused by every call
            value = loop.run_until_complete(awaitable_result(value))
        else:
            value = consume_generator(value)  # a generator cannot travel: its items can
    except BaseException as exc:  # the task's own failure, even SystemExit: report it
        return KIND_ERROR, encode_error(exc), loop
    try:
        return KIND_OK, dumps(value), loop
    except BaseException as exc:
        what = (
            f"its result, of type {type(value).__qualname__}, cannot be pickled to return "
            "it to the parent process"
        )
        return KIND_ERROR, _serialization_error(fn.name, what, exc), loop


def _watch_parent(alive: Connection) -> None:
    """Exit when the parent goes away (its end of `alive` closes), even mid-task."""
    try:
        alive.recv_bytes()
    except (EOFError, OSError):
        pass
    os._exit(0)


class _Skips:
    """The skip notices this worker has read (seqs of calls cancelled before start)."""

    __slots__ = ("conn", "seen", "seqs")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.seen = 0
        self.seqs: set[int] = set()

    def claim(self, cells: Any, seq: int, run_id: int) -> bool:
        """Under the gate: True if call `seq` may run (it is then marked started)."""
        notices = cells[CANCELS]
        if notices != self.seen:  # written in full before the count was bumped
            for _ in range(notices - self.seen):
                self.seqs.add(pickle.loads(self.conn.recv_bytes()))
            self.seen = notices
        cells[STARTED] = seq
        if seq in self.seqs:
            self.seqs.discard(seq)
            return False
        cells[PROGRESS] = run_id + 1  # 0 means "between calls"
        return True


def _initialize(conn: Connection, initializer: bytes | None) -> bool:
    """Run the pickled `(initializer, initargs)`, if any; if it fails, tell the parent
    why and say False (the worker then exits)."""
    if initializer is None:
        return True
    try:
        fn, args = pickle.loads(initializer)
        fn(*args)
    except BaseException as exc:  # even SystemExit: the parent must learn why
        try:
            conn.send_bytes(pickle.dumps(encode_error(exc), protocol=5))
        except OSError:  # the parent is gone: nobody to tell
            pass
        return False
    return True


def worker_main(
    conn: Connection, alive: Connection, cells: Any, gate: Any, initializer: bytes | None = None
) -> None:
    """The worker's main loop (the target of its `multiprocessing.Process`)."""
    # Ctrl-C in a terminal reaches the whole process group: the parent decides what
    # happens to running tasks (it kills their workers), so workers ignore SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Workers are daemonic (the interpreter never waits for them at exit), but a task
    # may use processes itself (a nested process flow, a ProcessPoolExecutor):
    # multiprocessing refuses children to daemonic processes unless told otherwise.
    # multiprocessing offers no public switch for this (its own pools set it the same way).
    multiprocessing.current_process()._config["daemon"] = False  # type: ignore[attr-defined]  # noqa: SLF001
    threading.Thread(
        target=_watch_parent, args=(alive,), name="asyncflow-parent-watch", daemon=True
    ).start()
    functions: dict[int, _Function] = {}
    skips = _Skips(conn)
    seq = 0
    loop: asyncio.AbstractEventLoop | None = None
    try:
        if not _initialize(conn, initializer):
            return
        while True:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                break
            if not data:
                break
            results = []
            flushed = time.monotonic()
            for run_id, key, fn_entry, call_bytes, is_async in pickle.loads(data):
                if fn_entry is not None:
                    functions[key] = _Function(*fn_entry)
                seq += 1
                with gate:
                    runs = skips.claim(cells, seq, run_id)
                if runs:
                    kind, payload, loop = _run_one(functions[key], call_bytes, is_async, loop)
                    cells[PROGRESS] = 0
                else:
                    kind, payload = KIND_SKIPPED, b""
                results.append((run_id, kind, payload))
                if time.monotonic() - flushed > FLUSH_SECONDS:
                    conn.send_bytes(pickle.dumps(results, protocol=5))
                    results = []
                    flushed = time.monotonic()
            if results:
                conn.send_bytes(pickle.dumps(results, protocol=5))
    finally:
        if loop is not None:
            loop.close()
        sys.stdout.flush()
