"""The worker processes behind `ProcessPoolTaskRunner`, and the thread that reads them.

Why not `concurrent.futures.ProcessPoolExecutor` (or loky): when one of its workers
dies, the whole executor breaks (or restarts) and every pending future fails. Here each
worker has its own pipe and a shared `progress` cell holding the id of the call it is
running, so a death is charged to that one call; its batch-mates are re-queued, a
replacement worker is started, and every other run goes on.

Threads: runs are handed over from whichever thread starts them (the submitter, or
the thread that completed their last upstream); one reader thread per pool,
"asyncflow-process-io", receives results, notices deaths, starts workers and feeds
idle ones. A worker is only sent work when it is idle (all its results read), so
neither side can block the other on a full pipe.
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
from multiprocessing.context import BaseContext
from typing import Any

from .._core import _engine, _portal
from .._core._exceptions import SerializationError, TaskCrashed
from .._core._states import State, StateType, completed_state
from ._by_name import task_function_ref
from ._process_worker import KIND_OK, dumps, worker_main

__all__ = ("ProcessPool",)

MAX_AUTO_CHUNK = 256
MAX_FAILED_STARTS = 3  # workers dying before any call, in a row: stop and say why


class _Item:
    """One run on its way to a worker."""

    __slots__ = ("attempt", "call_bytes", "fn", "is_async", "run", "run_id", "sent")

    def __init__(self, run: _engine.Run, run_id: int, fn: tuple[int, bytes], call: bytes) -> None:
        self.run = run
        self.run_id = run_id
        self.fn = fn  # (key, pickled function)
        self.call_bytes = call
        self.is_async = bool(run.invoke.task.is_async)  # type: ignore[attr-defined]
        self.attempt = 1
        self.sent = False


class _Worker:
    __slots__ = ("alive", "conn", "inflight", "killed", "known", "process", "progress", "reported")

    def __init__(self, process: Any, conn: Any, alive: Any, progress: Any) -> None:
        self.process = process
        self.progress = progress  # shared cell: 1 + id of the call running, or 0
        self.reported = False  # it sent a result: it started properly
        self.killed = False  # we killed it (cancel, timeout, shutdown)
        self.conn = conn  # duplex pipe to the worker
        self.alive = alive  # never written: the worker exits when it closes
        self.inflight: collections.deque[_Item] = collections.deque()
        self.known: set[int] = set()  # function keys this worker has loaded


def _describe_exit(pid: int | None, code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"its worker process (pid {pid}) was killed by {name}"
    return f"its worker process (pid {pid}) exited with code {code}"


class ProcessPool:
    """Up to `max_workers` worker processes fed from one queue of runs."""

    def __init__(
        self, max_workers: int, context: BaseContext, chunksize: int | None, name: str
    ) -> None:
        self._max_workers = max_workers
        self._context: Any = context  # typeshed's BaseContext lacks Process/Pipe/RawValue
        self._chunksize = chunksize
        self._name = name
        self._lock = threading.Lock()
        self._queue: collections.deque[_Item] = collections.deque()
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._functions: dict[Any, tuple[int, bytes]] = {}
        self._ids = itertools.count()
        self._worker_ids = itertools.count(1)
        self._closing = False
        self._failed_starts = 0
        self._held = threading.local()  # runs a `.map` holds until it has made them all
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._reader = threading.Thread(target=self._serve, name=f"{name}-io", daemon=True)
        self._reader.start()

    # ---- handing runs over (any thread) --------------------------------------------------
    def submit(self, run: _engine.Run) -> None:
        """Encode `run`'s call and queue it; an unpicklable one fails here, alone."""
        call = run.invoke
        task = call.task  # type: ignore[attr-defined]
        try:
            fn = self._function(task)
            params = call.resolved_parameters()  # type: ignore[attr-defined]
            call_bytes = _encode_call(task, params)
        except SerializationError as exc:
            _engine.complete(run, State(StateType.FAILED, message=str(exc)), None, exc)
            return
        item = _Item(run, next(self._ids), fn, call_bytes)
        held = getattr(self._held, "items", None)
        if held is not None:
            held.append(item)  # a map is submitting: handed over at once in end_batch
        else:
            self._enqueue([item])

    def begin_batch(self) -> bool:
        """Hold the runs this thread hands over until `end_batch` (one lock round-trip
        for a whole `.map`). False if this thread already holds a batch."""
        if getattr(self._held, "items", None) is not None:
            return False
        self._held.items = []
        return True

    def end_batch(self) -> None:
        items, self._held.items = self._held.items, None
        if items:
            self._enqueue(items)

    def _function(self, task: Any) -> tuple[int, bytes]:
        fn = self._functions.get(task)
        if fn is None:
            try:
                data = dumps(task_function_ref(task) or task.fn)
            except Exception as exc:
                raise SerializationError(
                    f"task {task.name!r}: its function cannot be pickled to send it to a "
                    f"worker process: {type(exc).__name__}: {exc}"
                ) from exc
            fn = self._functions[task] = (len(self._functions), data)
        return fn

    def _enqueue(self, items: list[_Item], front: bool = False) -> None:
        with self._lock:
            closing = self._closing
            if not closing:
                if front:
                    self._queue.extendleft(reversed(items))
                else:
                    self._queue.extend(items)
                self._feed_idle()
                if self._queue and len(self._workers) < self._max_workers:
                    self._wake()  # the reader thread starts workers
        if closing:
            for item in items:
                _engine.cancelled(item.run, "cancelled: its runner shut down before it started")

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:  # the pipe is full: the reader will wake anyway
            pass

    def cancel_running(self, run: _engine.Run) -> bool:
        """Kill the worker that holds `run` (it is replaced; the rest of its batch goes
        to another worker). False if no worker holds it."""
        with self._lock:
            target = next(
                (w for w in self._workers if any(item.run is run for item in w.inflight)), None
            )
            queued = target is None and any(item.run is run for item in self._queue)
        if queued:  # waiting for a retry: it will not be sent again
            return _engine.cancelled(run)
        if target is None:
            return False
        if run.cancel_reason is None:
            run.cancel_reason = "cancelled"
        _kill(target)
        return True

    # ---- under the lock ----------------------------------------------------------------
    def _send(self, worker: _Worker, items: list[_Item]) -> bool:
        """Send the runs of `items` that may still start; False if none could."""
        batch = []
        if len(items) > 1 and not any(item.sent or item.attempt > 1 for item in items):
            # A fresh batch (no timeouts in batches): one lock round-trip marks them all.
            ready = {id(run) for run in _engine.mark_running_many([i.run for i in items])}
            items = [item for item in items if id(item.run) in ready]
        else:
            items = [item for item in items if self._mark_running(item)]
        for item in items:
            item.sent = True
            key, data = item.fn
            fn_bytes = None if key in worker.known else data
            worker.known.add(key)
            batch.append((item.run_id, key, fn_bytes, item.call_bytes, item.is_async))
            worker.inflight.append(item)
        if not batch:
            return False
        try:
            worker.conn.send_bytes(pickle.dumps(batch, protocol=5))
        except OSError:
            _kill(worker)  # broken pipe: the reader will see it die and re-queue
        return True

    @staticmethod
    def _mark_running(item: _Item) -> bool:
        if item.sent or item.attempt > 1:  # re-sent after a death, or retried
            return item.run.future._set_running(item.attempt)
        return _engine.mark_running(item.run)  # arms the run's deadline, if any

    def _feed_idle(self) -> None:
        while self._idle and self._queue:
            self._feed(self._idle.pop())

    def _feed(self, worker: _Worker) -> None:
        """Give an idle worker its next batch, or park it."""
        queue = self._queue
        while queue and not self._closing:
            first = queue.popleft()
            batch = [first]
            if first.run.timeout is None:
                limit = self._chunksize or min(
                    MAX_AUTO_CHUNK, 1 + len(queue) // (4 * self._max_workers)
                )
                while len(batch) < limit and queue and queue[0].run.timeout is None:
                    batch.append(queue.popleft())
            if self._send(worker, batch):
                return
        self._idle.append(worker)

    # ---- the reader thread ---------------------------------------------------------------
    def _serve(self) -> None:
        wait = multiprocessing.connection.wait
        while True:
            with self._lock:
                if self._closing and not self._workers:
                    break
                spawn = 0
                if self._queue and not self._idle and not self._closing:
                    spawn = min(len(self._queue), self._max_workers - len(self._workers))
            try:
                for _ in range(spawn):
                    self._start_worker()
            except Exception as exc:  # e.g. multiprocessing refuses to start processes
                self._fail_queue(f"no worker process could be started: {type(exc).__name__}: {exc}")
            watched: dict[Any, tuple[_Worker, bool]] = {}
            for w in list(self._workers):
                watched[w.conn] = (w, False)
                watched[w.process.sentinel] = (w, True)
            for obj in wait([self._wake_r, *watched]):
                if obj == self._wake_r:
                    os.read(self._wake_r, 4096)
                    continue
                worker, is_sentinel = watched[obj]
                if worker not in self._workers:
                    continue  # already handled through its other handle
                if is_sentinel or not self._drain(worker):
                    self._on_death(worker)

    def _start_worker(self) -> None:
        parent_end, child_end = self._context.Pipe(duplex=True)
        alive_r, alive_w = self._context.Pipe(duplex=False)
        progress = self._context.RawValue("Q", 0)
        process = self._context.Process(
            target=worker_main,
            args=(child_end, alive_r, progress),
            name=f"{self._name}-worker-{next(self._worker_ids)}",
            daemon=True,
        )
        process.start()
        child_end.close()
        alive_r.close()
        worker = _Worker(process, parent_end, alive_w, progress)
        with self._lock:
            self._workers.append(worker)
            self._feed(worker)

    def _drain(self, worker: _Worker) -> bool:
        """Read every result the worker has sent; False once its pipe is closed."""
        conn = worker.conn
        try:
            while conn.poll():
                self._on_result(worker, conn.recv_bytes())
        except (EOFError, OSError):
            return False
        return True

    def _on_result(self, worker: _Worker, data: bytes) -> None:
        worker.reported = True
        results = pickle.loads(data)
        with self._lock:
            items = [worker.inflight.popleft() for _ in results]
            if not worker.inflight and worker in self._workers:
                self._feed(worker)
        for item, (run_id, kind, payload) in zip(items, results, strict=True):
            assert item.run_id == run_id, (item.run_id, run_id)
            self._finish(item, kind, payload)

    def _finish(self, item: _Item, kind: int, payload: bytes) -> None:
        run = item.run
        if run.cancel_reason == "cancelled":
            _engine.cancelled(run)
            return
        if kind == KIND_OK:
            try:
                value = pickle.loads(payload)
            except Exception as exc:
                err = SerializationError(
                    f"task {run.future.name!r}: its result could not be unpickled in the "
                    f"parent process: {type(exc).__name__}: {exc}"
                )
                _engine.complete(run, _engine.failure_state(err, item.attempt), None, err)
                return
            _engine.complete(run, completed_state(item.attempt), value)
            return
        try:
            error, text = pickle.loads(payload)
        except Exception as exc:  # the worker checked the round trip; this parent differs
            error, text = (
                SerializationError(
                    f"task {run.future.name!r} failed, and its exception could not be "
                    f"unpickled in the parent process: {type(exc).__name__}: {exc}"
                ),
                "",
            )
        error.__cause__ = RemoteTraceback(text)
        error = _engine.task_error(run, error)  # sys.exit() in the task: TaskExited
        delay = _engine.retry_delay(run, error, item.attempt)
        if delay is None:
            _engine.complete(run, _engine.failure_state(error, item.attempt), None, error)
            return
        item.attempt += 1
        if delay:
            loop = _portal.get_loop()
            loop.call_soon_threadsafe(loop.call_later, delay, self._enqueue, [item], True)
        else:
            self._enqueue([item], front=True)

    def _on_death(self, worker: _Worker) -> None:
        self._drain(worker)  # results it sent before dying still count
        process = worker.process
        process.join()
        pid, code = process.pid, process.exitcode
        process.close()
        running_id = worker.progress.value - 1
        with self._lock:
            self._workers.remove(worker)
            if worker in self._idle:
                self._idle.remove(worker)
            items = list(worker.inflight)
            worker.inflight.clear()
            crashed = next((item for item in items if item.run_id == running_id), None)
            # The rest of its batch goes first to the next worker (including calls that
            # finished but whose results died with it: they run again).
            self._queue.extendleft(reversed([item for item in items if item is not crashed]))
            self._feed_idle()
        worker.conn.close()
        worker.alive.close()
        if worker.reported or running_id >= 0 or worker.killed or self._closing:
            self._failed_starts = 0
        else:
            self._failed_starts += 1
            if self._failed_starts >= MAX_FAILED_STARTS:
                self._failed_starts = 0
                self._fail_queue(
                    f"worker processes exit before running anything ({_describe_exit(pid, code)}"
                    f", {MAX_FAILED_STARTS} times in a row). Workers import the main module: "
                    "a script that runs flows when imported must guard them with "
                    "`if __name__ == '__main__':`"
                )
        if crashed is None:
            return
        run = crashed.run
        if run.cancel_reason == "cancelled":
            _engine.cancelled(run)
        elif not run.future._state._final:
            err = TaskCrashed(f"task {run.future.name!r} crashed: {_describe_exit(pid, code)}")
            _engine.complete(run, State(StateType.CRASHED, message=str(err)), None, err)

    def _fail_queue(self, why: str) -> None:
        """End every queued run CRASHED: workers cannot be started (reader thread)."""
        with self._lock:
            items = list(self._queue)
            self._queue.clear()
        for item in items:
            run = item.run
            err = TaskCrashed(f"task {run.future.name!r} crashed: {why}")
            _engine.complete(run, State(StateType.CRASHED, message=str(err)), None, err)

    # ---- shutdown ------------------------------------------------------------------------
    def shutdown(self, kill: bool = False, timeout: float = 5.0) -> None:
        """Stop every worker (gracefully unless `kill`), then the reader thread."""
        with self._lock:
            self._closing = True
            workers = list(self._workers)
            for item in self._queue:
                _engine.cancelled(item.run, "cancelled: its runner shut down before it started")
            self._queue.clear()
        for w in workers:
            if kill:
                _kill(w)
            else:
                try:
                    w.conn.send_bytes(b"")
                except OSError:
                    _kill(w)
        self._wake()
        self._reader.join(timeout)
        if self._reader.is_alive():  # a worker ignored the stop: it is killed
            for w in workers:
                _kill(w)
            self._reader.join()
        os.close(self._wake_r)
        os.close(self._wake_w)


class RemoteTraceback(Exception):
    """The `__cause__` of an exception raised in a worker: its traceback there."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


def _kill(worker: _Worker) -> None:
    worker.killed = True
    try:
        worker.process.kill()
    except (OSError, ValueError):  # already gone or closed
        pass


def _encode_call(task: Any, params: dict[str, Any]) -> bytes:
    args, kwargs = task._split(params)
    try:
        return dumps((args, kwargs))
    except Exception as exc:
        for name, value in params.items():
            try:
                dumps(value)
            except Exception:
                raise SerializationError(
                    f"task {task.name!r}: argument {name!r}, of type "
                    f"{type(value).__qualname__}, cannot be pickled to send it to a worker "
                    f"process: {type(exc).__name__}: {exc}"
                ) from exc
        raise SerializationError(
            f"task {task.name!r}: its arguments cannot be pickled: {type(exc).__name__}: {exc}"
        ) from exc


def default_context() -> BaseContext:
    """forkserver where it exists (no fork-with-threads hazards, fast starts), else spawn."""
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        _preload_worker_module(context)
    return context


def _preload_worker_module(context: Any) -> None:
    # Workers fork from the forkserver: with this module already imported there, a
    # new worker starts in milliseconds. Only when nobody changed the preload list.
    from multiprocessing import forkserver

    server = forkserver._forkserver
    if getattr(server, "_preload_modules", None) == ["__main__"]:
        context.set_forkserver_preload(
            ["__main__", __name__.rsplit(".", 1)[0] + "._process_worker"]
        )
