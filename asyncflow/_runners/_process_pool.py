"""The worker processes behind `ProcessPoolTaskRunner`, and the thread that reads them.

Why not `concurrent.futures.ProcessPoolExecutor` (or loky): when one of its workers
dies, the whole executor breaks (or restarts) and every pending future fails. Here each
worker has its own pipe and shared cells (see `_process_worker`): `PROGRESS` holds the
id of the call it is running, so a death is charged to that one call; its batch-mates
are re-queued, a replacement worker is started, and every other run goes on. A crashed
call is retried, on another worker, as the task's retry policy says of `TaskCrashed`.

Batching: only the runs a `.map` hands over at once (`begin_batch` / `end_batch`) are
sent to a worker several to a message; a `.submit()` goes alone to an idle worker, so
N workers run N submitted runs at once. A run sent to a worker is still Pending: it
turns Running once the worker's `STARTED` cell passes it (the reader thread polls the
cells while any sent run has not started), so a run waiting in a batch can be
cancelled without touching another: the worker is told to skip it (`_withdraw`).

Threads: runs are handed over from whichever thread starts them (the submitter, or
the thread that completed their last upstream); one reader thread per pool,
"asyncflow-process-io", receives results, notices deaths, starts workers, feeds idle
ones and polls for starts. A worker is only sent work when it is idle (all its
results read), so neither side can block the other on a full pipe. The reader never
dies of an unexpected error: the runs it was handling fail (CRASHED), the rest go on.

Failed starts: a worker that exits before running anything (a script without a
`__main__` guard, a raising initializer) gives its runs back to the queue; after
`MAX_FAILED_STARTS` such exits in a row the queued runs end CRASHED saying why (the
initializer's own exception is the error's `__cause__`), so a pool that cannot start
a working worker fails its runs instead of restarting workers for ever. A later
submission tries again (the fault may have been passing: a database not up yet).

Forked workers (`mp_context="fork"`) close the parent's ends of every worker's pipes
they inherit (`register_after_fork`), so each worker's `alive` pipe closes when the
parent dies, whatever the start method.
"""

from __future__ import annotations

import collections
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.util
import os
import pickle
import signal
import threading
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any

from .._core import (
    Run,
    SerializationError,
    State,
    StateType,
    TaskCrashed,
    begin_many,
    cancelled,
    complete,
    crashed,
)
from ._by_name import task_function_ref
from ._process_worker import (
    CANCELS,
    KIND_OK,
    KIND_SKIPPED,
    PROGRESS,
    STARTED,
    dumps,
    serialization_error,
    worker_main,
)

__all__ = ("Initializer", "ProcessPool")

logger = logging.getLogger("asyncflow")

MAX_AUTO_CHUNK = 256
MAX_FAILED_STARTS = 3  # workers dying before any call, in a row: stop and say why
POLL_SECONDS = 0.005  # how soon a started run is reported Running
GATE_CHECK_SECONDS = 0.05  # how often a wait on a worker's gate checks that it lives
# How long a graceful shutdown lets busy workers finish their calls before killing them
# (read at each shutdown: the SIGTERM tests raise it so that a graceful stop hangs).
STOP_GRACE_SECONDS = 5.0

# What `_withdraw` found: the call will be skipped, runs now, already ran, or the
# worker is gone.
SKIPPED, RUNNING, DONE, GONE = range(4)


class _Item:
    """One run on its way to a worker."""

    __slots__ = ("batchable", "call_bytes", "fn", "is_async", "marked", "run", "run_id", "seq")

    def __init__(
        self,
        run: Run,
        run_id: int,
        fn: tuple[int, bytes, str],
        call: bytes,
        batchable: bool,
    ) -> None:
        self.run = run
        self.run_id = run_id
        self.fn = fn  # (key, pickled function, task name)
        self.call_bytes = call
        self.is_async = run.call.is_async
        self.batchable = batchable  # part of a `.map`: may share a message
        self.marked = False  # reported Running for its current attempt
        self.seq = 0  # its number among the calls sent to its worker (from 1)


class _Worker:
    """One worker process and what the parent knows of it."""

    def __init__(self, process: Any, conn: Connection, alive: Connection, cells: Any, gate: Any):
        self.process = process
        self.cells = cells  # shared: PROGRESS, STARTED, CANCELS (see _process_worker)
        self.gate = gate  # shared lock: deciding "skip or start" for the next call
        self.reported = False  # it sent a result: it started properly
        self.init_error: BaseException | None = None  # its initializer raised this
        self.killed = False  # we killed it (cancel, timeout, shutdown)
        self.conn = conn  # duplex pipe to the worker
        self.alive = alive  # never written: the worker exits when it closes
        self.inflight: collections.deque[_Item] = collections.deque()  # sent, no result
        self.unstarted: collections.deque[_Item] = collections.deque()  # sent, not seen start
        self.known: set[int] = set()  # function keys this worker has loaded
        self.sent = 0  # calls sent so far: the next one's `seq` is this + 1

    def reached(self, seq: int) -> list[_Item]:
        """Take the sent runs not seen starting whose number is `seq` or lower."""
        unstarted, out = self.unstarted, []
        while unstarted and unstarted[0].seq <= seq:
            out.append(unstarted.popleft())
        return out


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
        self,
        max_workers: int,
        context: BaseContext,
        chunksize: int | None,
        name: str,
        initializer: Initializer | None = None,
    ) -> None:
        self._max_workers = max_workers
        self._initializer = initializer
        self._context: Any = context  # typeshed's BaseContext lacks Process/Pipe/RawArray
        self._chunksize = chunksize
        self._name = name
        self._lock = threading.Lock()
        self._queue: collections.deque[_Item] = collections.deque()
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._sent: dict[Run, tuple[_Worker, _Item]] = {}  # runs awaiting a result
        self._functions: dict[Any, tuple[int, bytes, str]] = {}
        self._ids = itertools.count()
        self._worker_ids = itertools.count(1)
        self._closing = False
        self._failed_starts = 0
        self._reader_sleeps = False  # waiting with no poll timeout: wake it to poll
        self._held = threading.local()  # runs a `.map` holds until it has made them all
        self._wake_r, self._wake_w = os.pipe()
        self._wake_open = True
        os.set_blocking(self._wake_w, False)
        multiprocessing.util.register_after_fork(self, ProcessPool._close_wake_in_child)
        self._reader = threading.Thread(target=self._serve, name=f"{name}-io", daemon=True)
        self._reader.start()

    def _close_wake_in_child(self) -> None:
        if self._wake_open:
            os.close(self._wake_r)
            os.close(self._wake_w)

    # ---- handing runs over (any thread) --------------------------------------------------
    def submit(self, run: Run) -> None:
        """Encode `run`'s call and queue it; an unpicklable one fails here, alone."""
        call = run.call
        task = call.task
        try:
            fn = self._function(task)
            call_bytes = _encode_call(call)
        except SerializationError as exc:
            complete(run, State(StateType.FAILED, message=str(exc)), None, exc)
            return
        held = getattr(self._held, "items", None)
        batchable = held is not None and run.timeout is None  # deadlines are per message
        item = _Item(run, next(self._ids), fn, call_bytes, batchable)
        if held is not None:
            held.append(item)  # a map is submitting: handed over at once in end_batch
        else:
            self._enqueue([item])

    def begin_batch(self) -> bool:
        """Hold the runs this thread hands over until `end_batch` (one lock round-trip
        for a whole `.map`, whose runs may then share messages). False if this thread
        already holds a batch."""
        if getattr(self._held, "items", None) is not None:
            return False
        self._held.items = []
        return True

    def end_batch(self) -> None:
        items, self._held.items = self._held.items, None
        if items:
            self._enqueue(items)

    def _function(self, task: Any) -> tuple[int, bytes, str]:
        fn = self._functions.get(task)
        if fn is None:
            try:
                data = dumps(task_function_ref(task) or task.fn)
            except Exception as exc:
                what = "its function cannot be pickled to send it to a worker process"
                raise serialization_error(task.name, what, exc) from exc
            fn = self._functions[task] = (len(self._functions), data, task.name)
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
                cancelled(item.run, "cancelled: its runner shut down before it started")

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:  # the pipe is full: the reader will wake anyway
            pass

    # ---- cancelling (any thread) ---------------------------------------------------------
    def holds(self, run: Run) -> bool:
        """Is `run` on a worker (sent, maybe started)? Then `stop_running` can stop it."""
        return run in self._sent

    def stop_running(self, run: Run) -> None:
        """Stop a run that started: skipped if its worker has not reached it after all,
        else that worker is killed (and replaced; the rest of its batch goes to another
        worker). The outcome then reported ends the run as the core decided."""
        if self.forget(run) == SKIPPED:  # nothing will come back for it: say so now
            run.report_crash(TaskCrashed(f"task {run.name!r} was stopped before it ran"))
        # DONE: its result is on the way; GONE: its worker's death is (or was) reported.

    def forget(self, run: Run) -> int:
        """Make sure `run` (say, CANCELLED while Pending) never runs. Queued, it is
        dropped when fed; sent, its worker skips it; if it started since the last poll,
        its worker is killed (the reader sees it die; a late outcome of a final run is
        dropped). Returns what `_withdraw` found."""
        with self._lock:
            held = self._sent.get(run)
            found = GONE if held is None else self._withdraw(*held)
        if found == RUNNING:
            assert held is not None
            _kill(held[0])
        return found

    def _withdraw(self, worker: _Worker, item: _Item) -> int:
        """Under the lock: tell `worker` to skip `item` unless it started already."""
        gate = worker.gate
        while not gate.acquire(timeout=GATE_CHECK_SECONDS):
            # A worker killed while holding its gate never releases it.
            if multiprocessing.connection.wait([worker.process.sentinel], 0):
                return GONE
        try:
            cells = worker.cells
            if cells[STARTED] < item.seq:
                try:
                    worker.conn.send_bytes(pickle.dumps(item.seq))
                except OSError:
                    return GONE
                cells[CANCELS] += 1  # after the notice is written: the worker reads it
                return SKIPPED
            return RUNNING if cells[PROGRESS] == item.run_id + 1 else DONE
        finally:
            gate.release()

    # ---- under the lock ----------------------------------------------------------------
    def _send(self, worker: _Worker, items: list[_Item]) -> None:
        batch = []
        for item in items:
            worker.sent += 1
            item.seq = worker.sent
            key, data, name = item.fn
            fn_entry = None if key in worker.known else (name, data)
            worker.known.add(key)
            batch.append((item.run_id, key, fn_entry, item.call_bytes, item.is_async))
            worker.inflight.append(item)
            worker.unstarted.append(item)
            self._sent[item.run] = (worker, item)
        try:
            worker.conn.send_bytes(pickle.dumps(batch, protocol=5))
        except OSError:  # broken pipe: it is exiting; the reader sees it die and re-queues
            _kill(worker, ours=False)  # not a kill of ours: its death may be a failed start
        if self._reader_sleeps:  # it must poll for the start of these runs
            self._reader_sleeps = False
            self._wake()

    def _feed_idle(self) -> None:
        while self._idle and self._queue:
            self._feed(self._idle.pop())

    def _feed(self, worker: _Worker) -> None:
        """Give an idle worker its next run (or a `.map` batch of them), or park it."""
        queue = self._queue
        while queue and not self._closing:
            first = queue.popleft()
            if first.run.future.done():  # cancelled while queued
                continue
            batch = [first]
            if first.batchable:
                limit = self._chunksize or min(
                    MAX_AUTO_CHUNK, 1 + len(queue) // (4 * self._max_workers)
                )
                while len(batch) < limit and queue and queue[0].batchable:
                    item = queue.popleft()
                    if not item.run.future.done():
                        batch.append(item)
            self._send(worker, batch)
            return
        self._idle.append(worker)

    def _take_started(self) -> tuple[list[_Item], bool]:
        """The sent runs whose worker has reached them since the last look, and
        whether any sent run has still not started."""
        started: list[_Item] = []
        waiting = False
        for worker in self._workers:
            if worker.unstarted:
                started += worker.reached(worker.cells[STARTED])
                waiting = waiting or bool(worker.unstarted)
        return started, waiting

    # ---- the reader thread ---------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            try:
                if not self._serve_once():
                    return
            except BaseException as exc:  # a bug here must not leave runs Running for good
                logger.exception("the process runner's I/O thread failed; failing its runs")
                self._fail_all(exc)

    def _serve_once(self) -> bool:
        """Start workers, wait for something to happen, handle it; False when done."""
        with self._lock:
            if self._closing and not self._workers:
                return False
            spawn = 0
            if self._queue and not self._idle and not self._closing:
                spawn = min(len(self._queue), self._max_workers - len(self._workers))
        try:
            for _ in range(spawn):
                self._start_worker()
        except Exception as exc:  # e.g. multiprocessing refuses to start processes
            self._fail_queue(f"no worker process could be started: {type(exc).__name__}: {exc}")
        with self._lock:
            started, waiting = self._take_started()
            watched: dict[Any, tuple[_Worker, bool]] = {}
            for w in self._workers:
                watched[w.conn] = (w, False)
                watched[w.process.sentinel] = (w, True)
            self._reader_sleeps = not waiting
        self._mark_started(started)
        ready = multiprocessing.connection.wait(
            [self._wake_r, *watched], POLL_SECONDS if waiting else None
        )
        self._reader_sleeps = False
        for obj in ready:
            if obj == self._wake_r:
                os.read(self._wake_r, 4096)
                continue
            worker, is_sentinel = watched[obj]
            if worker not in self._workers:
                continue  # already handled through its other handle
            try:
                if is_sentinel or not self._drain(worker):
                    self._on_death(worker)
            except BaseException as exc:
                logger.exception("the process runner's I/O thread failed on a worker")
                self._fail_worker(worker, exc)
        return True

    @staticmethod
    def _mark_started(items: list[_Item]) -> None:
        """Report Running the runs a worker has reached: each begins its attempt (one
        lock round-trip for those without a deadline; `begin` arms a deadline)."""
        fresh = [item for item in items if not item.marked]  # else re-sent after a death
        if not fresh:
            return
        begin_many([i.run for i in fresh if i.run.timeout is None or i.run.attempt])
        for item in fresh:
            run = item.run
            if run.timeout is not None and not run.attempt:
                run.begin_attempt()  # the first attempt of a run with a deadline
            item.marked = True

    def _start_worker(self) -> None:
        context, init = self._context, self._initializer
        parent_end, child_end = context.Pipe(duplex=True)
        alive_r, alive_w = context.Pipe(duplex=False)
        for parent_side in (parent_end, alive_w):  # forked workers must not keep them open
            multiprocessing.util.register_after_fork(parent_side, Connection.close)
        cells = context.RawArray("Q", 3)
        gate = context.Lock()
        process = context.Process(
            target=worker_main,
            args=(child_end, alive_r, cells, gate, init and init.data),
            name=f"{self._name}-worker-{next(self._worker_ids)}",
            daemon=True,
        )
        try:
            process.start()
        finally:
            child_end.close()
            alive_r.close()
        worker = _Worker(process, parent_end, alive_w, cells, gate)
        with self._lock:
            self._workers.append(worker)
            if self._closing:  # shutdown began while it started: it missed the stop
                # Killed, not stopped: it has no work to finish, and a worker still
                # starting (importing the main module, in its initializer) reads no
                # stop request: `shutdown` would wait its full timeout for it.
                _kill(worker)
            else:
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
        results = pickle.loads(data)  # plain tuples: the values are still bytes
        if isinstance(results, bytes):  # its initializer failed: it exits now
            self._on_init_failure(worker, results)
            return
        worker.reported = True
        with self._lock:
            items = [worker.inflight.popleft() for _ in results]
            last = items[-1].seq
            unseen = worker.reached(last)  # finished before anyone saw them start
            sent = self._sent
            for item in items:
                sent.pop(item.run, None)
            if not worker.inflight and worker in self._workers:
                self._feed(worker)
        self._mark_started(unseen)
        for item, (run_id, kind, payload) in zip(items, results, strict=True):
            assert item.run_id == run_id, (item.run_id, run_id)
            _guarded(item.run, self._finish, item, kind, payload)

    def _finish(self, item: _Item, kind: int, payload: bytes) -> None:
        run = item.run
        if kind == KIND_SKIPPED:  # cancelled before it started: final already
            cancelled(run, "cancelled before it started")
            return
        if kind == KIND_OK:
            try:
                value = pickle.loads(payload)
            except BaseException as exc:  # a reducer may raise anything, even SystemExit
                what = "its result could not be unpickled in the parent process"
                self._retry_if_due(item, run.report_error(serialization_error(run.name, what, exc)))
                return
            run.report_value(value)
            return
        error = decode_error(payload, run.future.name, "in the parent process")
        self._retry_if_due(item, run.report_error(error))

    def _on_init_failure(self, worker: _Worker, payload: bytes) -> None:
        init = self._initializer
        assert init is not None  # only a worker given an initializer sends this
        failed = f"the initializer {init.name!r} failed"
        error = decode_error(payload, init.name, "in the parent process", failed=failed)
        worker.init_error = error
        logger.error(
            "the initializer %r of %s failed in worker process %s (pid %s)",
            init.name,
            init.runner,
            worker.process.name,
            worker.process.pid,
            exc_info=error,
        )

    def _retry_if_due(self, item: _Item, delay: float | None) -> None:
        """After a failed or crashed attempt the core said: another attempt after
        `delay` (queue it first in line, on a fresh start), or None (the run is final)."""
        if delay is None:
            return
        item.marked = False
        item.run.retry_later(delay, lambda _run: self._enqueue([item], front=True))

    def _forget_worker(self, worker: _Worker) -> list[_Item]:
        """Under the lock: drop a dead worker; returns the runs it held."""
        self._workers.remove(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        items = list(worker.inflight)
        worker.inflight.clear()
        worker.unstarted.clear()
        for item in items:
            self._sent.pop(item.run, None)
        return items

    def _close_worker(self, worker: _Worker) -> tuple[int | None, int | None]:
        process = worker.process
        process.join()
        pid, code = process.pid, process.exitcode
        process.close()
        worker.conn.close()
        worker.alive.close()
        return pid, code

    def _on_death(self, worker: _Worker) -> None:
        self._drain(worker)  # results it sent before dying still count
        running_id = worker.cells[PROGRESS] - 1
        with self._lock:
            items = self._forget_worker(worker)
            crashed = next((item for item in items if item.run_id == running_id), None)
            # The rest of its batch goes first to the next worker (including calls that
            # finished but whose results died with it: they run again).
            self._queue.extendleft(reversed([item for item in items if item is not crashed]))
            self._feed_idle()
        pid, code = self._close_worker(worker)
        self._count_failed_start(worker, running_id, pid, code)
        if crashed is None:
            return
        _guarded(crashed.run, self._on_crash, crashed, _describe_exit(pid, code))

    def _on_crash(self, item: _Item, how: str) -> None:
        self._mark_started([item])  # it died before anyone saw it start: it did start
        run = item.run
        err = TaskCrashed(f"task {run.future.name!r} crashed: {how}")
        self._retry_if_due(item, run.report_crash(err))

    def _count_failed_start(
        self, worker: _Worker, running_id: int, pid: int | None, code: int | None
    ) -> None:
        """A worker died: one more failed start in a row (it ran nothing: it was not
        killed by us, or its initializer failed), or a reset of the count."""
        init_failed = worker.init_error is not None
        ran = worker.reported or running_id >= 0 or worker.killed
        if self._closing or (ran and not init_failed):
            self._failed_starts = 0
            return
        self._failed_starts += 1
        if self._failed_starts >= MAX_FAILED_STARTS:
            self._failed_starts = 0
            self._fail_queue(self._why_starts_fail(worker, pid, code), worker.init_error)

    def _why_starts_fail(self, worker: _Worker, pid: int | None, code: int | None) -> str:
        in_a_row = f"{MAX_FAILED_STARTS} times in a row"
        init, error = self._initializer, worker.init_error
        if init is not None and error is not None:
            return (
                f"the initializer {init.name!r} of {init.runner} failed in its worker process "
                f"(pid {pid}), {in_a_row}: {type(error).__name__}: {error}"
            )
        why = (
            f"worker processes exit before running anything ({_describe_exit(pid, code)}, "
            f"{in_a_row}). Workers import the main module: a script that runs flows when "
            "imported must guard them with `if __name__ == '__main__':`"
        )
        if init is not None:
            why += f"; or the initializer {init.name!r} ends the worker process"
        return why

    def _fail_worker(self, worker: _Worker, exc: BaseException) -> None:
        """The reader failed while handling `worker`: end its runs CRASHED, drop it."""
        _kill(worker)
        with self._lock:
            items = self._forget_worker(worker) if worker in self._workers else []
            self._feed_idle()
        try:
            self._close_worker(worker)
        except Exception:  # already closed by the handler that failed
            pass
        for item in items:
            crashed(item.run, exc)

    def _take_queue(self, closing: bool = False) -> tuple[list[_Worker], list[_Item]]:
        """Empty the queue (and maybe mark the pool closing) under the lock: the workers
        and the queued runs there were."""
        with self._lock:
            self._closing = self._closing or closing
            items = list(self._queue)
            self._queue.clear()
            return list(self._workers), items

    def _fail_all(self, exc: BaseException) -> None:
        """The reader failed outside any one worker: end every run CRASHED, kill every
        worker (the pool starts new ones for later runs)."""
        workers, items = self._take_queue()
        for worker in workers:
            self._fail_worker(worker, exc)
        for item in items:
            crashed(item.run, exc)

    def _fail_queue(self, why: str, cause: BaseException | None = None) -> None:
        """End every queued run CRASHED: workers cannot be started (reader thread)."""
        for item in self._take_queue()[1]:
            run = item.run
            err = TaskCrashed(f"task {run.future.name!r} crashed: {why}")
            err.__cause__ = cause
            complete(run, State(StateType.CRASHED, message=str(err)), None, err)

    # ---- shutdown ------------------------------------------------------------------------
    def shutdown(self, kill: bool = False) -> None:
        """Stop every worker (gracefully unless `kill`: busy ones then get
        `STOP_GRACE_SECONDS` to finish), then the reader thread."""
        workers, queued = self._take_queue(closing=True)
        for item in queued:
            cancelled(item.run, "cancelled: its runner shut down before it started")
        for w in workers:
            (_kill if kill else _stop)(w)
        self._wake()
        self._reader.join(STOP_GRACE_SECONDS)
        if self._reader.is_alive():  # a worker ignored the stop: it is killed
            with self._lock:
                workers = list(self._workers)
            for w in workers:
                _kill(w)
            self._reader.join()
        self._wake_open = False  # first: a process forked now must not close them
        os.close(self._wake_r)
        os.close(self._wake_w)


class Initializer:
    """A runner's `initializer(*initargs)`, pickled once, with the names messages use."""

    __slots__ = ("data", "name", "runner")

    def __init__(self, data: bytes, name: str, runner: str) -> None:
        self.data = data  # pickled `(initializer, initargs)`
        self.name = name  # its qualified name, or its repr (a partial, a callable object)
        self.runner = runner  # the runner's class name, for messages


class RemoteTraceback(Exception):
    """The `__cause__` of an exception raised in a worker: its traceback there."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


def decode_error(data: bytes, name: str, where: str, failed: str | None = None) -> BaseException:
    """The exception `encode_error` pickled, its traceback there as `__cause__`; if it
    cannot be unpickled `where` (the worker checked the round trip, so this process
    differs), a `SerializationError` naming task `name` (or saying `failed`: what
    failed, when it is not a task)."""
    error: BaseException
    try:
        error, text = pickle.loads(data)
    except BaseException as exc:  # a reducer may raise anything, even SystemExit
        return SerializationError(
            f"{failed or f'task {name!r} failed'}, and its exception could not be "
            f"unpickled {where}: "
            f"{type(exc).__name__}: {exc}"
        )
    if text:
        error.__cause__ = RemoteTraceback(text)
    return error


def _guarded(run: Run, settle: Any, *args: Any) -> None:
    """Call `settle(*args)`, which ends `run` or queues its retry; if it raises (a
    reducer or a done callback raising even SystemExit), `run` ends CRASHED."""
    try:
        settle(*args)
    except BaseException as exc:
        logger.exception("finishing task %r failed", run.future.name)
        crashed(run, exc)


def _stop(worker: _Worker) -> None:
    try:
        worker.conn.send_bytes(b"")  # it exits once its batch is done
    except OSError:
        _kill(worker)


def _kill(worker: _Worker, ours: bool = True) -> None:
    worker.killed = worker.killed or ours
    try:
        worker.process.kill()
    except (OSError, ValueError):  # already gone or closed
        pass


def _encode_call(call: Any) -> bytes:
    """The call's arguments, pickled; a clear error naming the task and the argument."""
    _, args, kwargs = call.parts()
    task = call.task
    try:
        return dumps((args, kwargs))
    except Exception as exc:
        for name, value in call.resolved_parameters().items():
            try:
                dumps(value)
            except Exception:
                what = (
                    f"argument {name!r}, of type {type(value).__qualname__}, cannot be pickled "
                    "to send it to a worker process"
                )
                raise serialization_error(task.name, what, exc) from exc
        raise serialization_error(task.name, "its arguments cannot be pickled", exc) from exc


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

    # The stdlib keeps its forkserver in a private global; no public way to read it.
    server = forkserver._forkserver  # noqa: SLF001
    if getattr(server, "_preload_modules", None) == ["__main__"]:
        context.set_forkserver_preload(
            ["__main__", __name__.rsplit(".", 1)[0] + "._process_worker"]
        )
