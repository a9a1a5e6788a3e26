"""What runs inside a `ProcessPoolTaskRunner` worker process, and the wire format.

A worker owns one duplex pipe to its parent. It receives a batch (a pickled list of
calls) and runs them one after the other. Results go back together, when the batch is
done or every `FLUSH_SECONDS` of it, so many small calls cost few messages. Before
each call the worker writes that call's id into a shared `progress` cell: when a
worker dies, the parent reads it to charge the death to the one call that was
running; the batch's other calls go to another worker (ones that had finished but
whose results died with the worker are run again).

Messages, parent -> worker: `pickle([(run_id, fn_key, fn_bytes | None, call_bytes,
is_async), ...])`, or `b""` to stop. Worker -> parent: `pickle([(run_id, kind,
payload), ...])`, payload being the pickled value (kind OK) or the pickled
`(exception, traceback_text)` (kind ERROR).

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

from .._core._exceptions import RemoteError, SerializationError

__all__ = ("KIND_ERROR", "KIND_OK", "dumps", "encode_error", "worker_main")

FLUSH_SECONDS = 0.005
KIND_OK = 0
KIND_ERROR = 1


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
    except Exception:
        wrapper = RemoteError(type(exc).__qualname__, str(exc), text)
        data = pickle.dumps((wrapper, text), protocol=5)
    return data


def _run_one(
    fn: Any, call_bytes: bytes, is_async: bool, loop: asyncio.AbstractEventLoop | None
) -> tuple[int, bytes, asyncio.AbstractEventLoop | None]:
    try:
        args, kwargs = pickle.loads(call_bytes)
    except Exception as exc:
        err = SerializationError(f"the arguments could not be unpickled in the worker: {exc}")
        return KIND_ERROR, encode_error(err), loop
    try:
        value = fn(*args, **kwargs)
        if is_async:
            if loop is None:
                loop = asyncio.new_event_loop()  # one per worker, reused by every call
            value = loop.run_until_complete(value)
    except BaseException as exc:  # the task's own failure, even SystemExit: report it
        return KIND_ERROR, encode_error(exc), loop
    try:
        return KIND_OK, dumps(value), loop
    except Exception as exc:
        err = SerializationError(
            f"its result, of type {type(value).__qualname__}, cannot be pickled "
            f"to return to the parent process: {exc}"
        )
        return KIND_ERROR, encode_error(err), loop


def _load_function(data: bytes) -> Any:
    try:
        return pickle.loads(data)
    except Exception as exc:  # e.g. it refers to a module the worker cannot import
        return SerializationError(
            f"the task's function could not be unpickled in the worker: {exc}"
        )


def _watch_parent(alive: Connection) -> None:
    """Exit when the parent goes away (its end of `alive` closes), even mid-task."""
    try:
        alive.recv_bytes()
    except (EOFError, OSError):
        pass
    os._exit(0)


def worker_main(conn: Connection, alive: Connection, progress: Any) -> None:
    """The worker's main loop (the target of its `multiprocessing.Process`)."""
    # Ctrl-C in a terminal reaches the whole process group: the parent decides what
    # happens to running tasks (it kills their workers), so workers ignore SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Workers are daemonic (the interpreter never waits for them at exit), but a task
    # may use processes itself (a nested process flow, a ProcessPoolExecutor):
    # multiprocessing refuses children to daemonic processes unless told otherwise.
    multiprocessing.current_process()._config["daemon"] = False  # type: ignore[attr-defined]
    threading.Thread(
        target=_watch_parent, args=(alive,), name="asyncflow-parent-watch", daemon=True
    ).start()
    functions: dict[int, Any] = {}
    loop: asyncio.AbstractEventLoop | None = None
    try:
        while True:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                break
            if not data:
                break
            results = []
            flushed = time.monotonic()
            for run_id, key, fn_bytes, call_bytes, is_async in pickle.loads(data):
                if fn_bytes is not None:
                    functions[key] = _load_function(fn_bytes)
                fn = functions[key]
                progress.value = run_id + 1  # 0 means "between calls"
                if isinstance(fn, SerializationError):
                    kind, payload = KIND_ERROR, encode_error(fn)
                else:
                    kind, payload, loop = _run_one(fn, call_bytes, is_async, loop)
                results.append((run_id, kind, payload))
                progress.value = 0
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
