"""The task worker: claims runs from the broker, executes them, stores their outcomes.

`TaskWorker(tasks, url, limit=...)` serves the given tasks (each found by its key,
`"module:qualname"`). Its loop, on one event loop:

1. claim up to `limit - held` queued runs of its task keys (a message for a task it
   does not serve is never claimed, so it stays for another worker); when there are
   none, wait for the broker to change (on a thread of its own) or a slot to free up.
   Two wider claims exist, so that a message for a task no worker can import fails
   its future instead of waiting forever:
   - `modules=[...]` (the CLI's bare `module` form): the worker serves those modules
     whole, so it also claims their keys that it did not find (`jobs:renamed`, sent
     by a submitter running other code) and fails them, naming the task, the module,
     this worker and the tasks it serves;
   - `import_any=True` (the CLI's `--any`): it claims every key and imports a task's
     module on first use, on this loop (only after the message passed its seal
     check: the key that is imported is the one inside the signed call). A module
     that does not import, or a name in it that is not a task, fails the run with
     the ImportError's text naming the module;
2. for each delivery, check its seal *before* unpickling it: a message that fails is
   dead-lettered with the reason and logged, never loaded; then submit the task to a
   local `ThreadPoolTaskRunner` (sync tasks on its `limit` threads, async tasks on this
   loop), so the task's `retries`, delays, `retry_condition_fn` and `timeout_seconds`
   apply here exactly as they do in-process; its hooks do not (they run where the
   future is, in the submitter);
3. renew each held lease every third of its length. A run is claimed under the
   worker's `lease_seconds`; a call that carries its submitter's lease
   (`WorkerTaskRunner(lease_seconds=...)`) is renewed to that one as soon as it is
   decoded, and from then on at a third of it. A renewal that says the submitter
   cancelled the run cancels the local future (an async run stops for real; a sync one
   cannot be interrupted and finishes); one that says the lease was lost (this worker
   was presumed dead, say after SIGSTOP) drops the work: its result is not stored;
4. when a run is final, store its outcome (sealed) with `ack`; the broker keeps the
   first one written, and a late one is dropped and logged;
5. forget old runs: a record and its outcome are purged `keep_results_seconds` after
   the run became final (default a day; None keeps them for good), checked before a
   claim at most every `purge_interval(keep)` seconds, so that a broker that serves
   for months does not grow without bound. Every worker purges (the delete is the
   same whoever runs it); a future rebuilt from a purged run id reports it unknown.

Stopping (`stop()`, or SIGTERM/SIGINT with `handle_signals`): no more claims; runs
held finish within `grace_seconds`; the ones still running then are handed back
(`release`, so another worker takes them, without counting a delivery) and
abandoned here; then it returns (the CLI exits 0).

All broker calls run on one I/O thread (`asyncflow-task-worker-io`) and the blocking
`wait` on another, so a slow broker never stalls async tasks on the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .._broker import BadSignature, Delivery, Lease, PayloadTooLarge
from .._core import SerializationError, TaskFuture, check_count
from .._runners._thread import ThreadPoolTaskRunner
from ._channel import Channel, acquire, release
from ._wire import (
    Call,
    decode_call,
    encode_future,
    encode_outcome,
    failed_state,
    find_task,
    task_key,
)

__all__ = ("TaskWorker", "load_tasks")

logger = logging.getLogger("asyncflow")
T = TypeVar("T")
DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_GRACE_SECONDS = 30.0
DEFAULT_KEEP_RESULTS_SECONDS = 86400.0  # a day, as Celery's `result_expires`
WAIT_SECONDS = 0.1  # longest blocking `broker.wait` (a stop waits for it to return)


def purge_interval(keep: float) -> float:
    """How often a worker purges runs kept `keep` seconds: a tenth of it, between 1 s
    and an hour (a record then lives at most 10% longer than asked)."""
    return min(max(keep / 10, 1.0), 3600.0)


def import_task(key: str, worker: str) -> Any:
    """The task at `key` ("module:qualname"), its module imported now; an ImportError
    naming the task, the module and `worker` if there is none."""
    module, _, qualname = key.partition(":")
    try:
        importlib.import_module(module)
    except Exception as exc:
        raise ImportError(
            f"task {qualname!r}: module {module!r} does not import on task worker {worker}: "
            f"{type(exc).__name__}: {exc}",
            name=module,
        ) from exc
    found = find_task(module, qualname, imported_only=True)
    if not _is_task(found) or getattr(found.fn, "__module__", None) != module:
        raise ImportError(
            f"task {qualname!r} is not in module {module!r} on task worker {worker} "
            f"(found {found!r})",
            name=module,
        )
    return found


def _is_task(obj: Any) -> bool:
    return callable(getattr(obj, "submit", None)) and hasattr(obj, "fn")


def load_tasks(specs: Iterable[Any], *, allow_none: bool = False) -> dict[str, Any]:
    """`{task key: task}` from tasks and `"module:qualname"` strings (imported now)."""
    found: dict[str, Any] = {}
    for spec in specs:
        if isinstance(spec, str):
            module, sep, qualname = spec.partition(":")
            if not sep or not module or not qualname:
                raise ValueError(f"a task is named 'module:qualname', got {spec!r}")
            obj = find_task(module, qualname)
            if obj is None or not callable(getattr(obj, "submit", None)):
                raise ValueError(f"{spec!r} is not a task (found {obj!r})")
            spec = obj
        if not _is_task(spec):
            raise TypeError(f"serve() takes tasks or 'module:qualname' strings, got {spec!r}")
        found[task_key(spec)] = spec
    if not found and not allow_none:
        raise ValueError("a task worker needs at least one task to serve")
    return found


class _Held:
    """A run this worker holds: its delivery and, once submitted, its local future."""

    __slots__ = ("delivery", "future", "handed_back", "lease", "lost", "renew_at")

    def __init__(self, delivery: Delivery, lease: float, now: float) -> None:
        self.delivery = delivery
        self.lease = lease  # seconds: the worker's at the claim, then the call's
        self.renew_at = now + lease / 3  # on the loop's clock
        self.future: TaskFuture[Any] | None = None
        self.lost = False  # the lease was taken over: never store a result
        self.handed_back = False  # released on shutdown: never store a result


class TaskWorker:
    """Serves `tasks` from the broker at `url` (see the module docstring)."""

    def __init__(
        self,
        tasks: Iterable[Any],
        url: str | None = None,
        *,
        limit: int = 10,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        name: str | None = None,
        modules: Iterable[str] = (),
        import_any: bool = False,
        keep_results_seconds: float | None = DEFAULT_KEEP_RESULTS_SECONDS,
    ) -> None:
        self.tasks = load_tasks(tasks, allow_none=import_any)
        if isinstance(modules, str):
            raise TypeError(f"modules must be a collection of module names, not {modules!r}")
        self.modules = sorted(set(modules))  # served whole: see the module docstring
        for module in self.modules:
            if not module or ":" in module:
                raise ValueError(f"modules are named without ':', got {module!r}")
        self.import_any = bool(import_any)
        self.limit = check_count("limit", limit, minimum=1)
        if not lease_seconds > 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds!r}")
        if not grace_seconds >= 0:
            raise ValueError(f"grace_seconds must be >= 0, got {grace_seconds!r}")
        if keep_results_seconds is not None and not (
            isinstance(keep_results_seconds, (int, float)) and keep_results_seconds > 0
        ):
            raise ValueError(
                f"keep_results_seconds must be > 0 or None, got {keep_results_seconds!r}"
            )
        self.keep_results_seconds = keep_results_seconds
        self.lease_seconds = float(lease_seconds)
        self.grace_seconds = float(grace_seconds)
        self.url = url
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.held: dict[str, _Held] = {}  # run id -> a run this worker holds
        self.stopping = threading.Event()  # set by stop()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.wake: asyncio.Event | None = None  # the claim loop's: work may be due
        self._copies: dict[str, Any] = {}  # task key -> the task as executed here

    # ---- control -------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop taking work and shut down (thread-safe; `serve` returns soon after)."""
        self.stopping.set()
        loop, wake = self._loop, self.wake
        if loop is not None and wake is not None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop closed: it has stopped already
                pass

    async def serve(self, *, handle_signals: bool = False) -> None:
        """Serve until `stop()` (or SIGTERM/SIGINT if `handle_signals`)."""
        loop = self._loop = asyncio.get_running_loop()
        self.wake = asyncio.Event()
        ch = acquire(self.url)
        signals = _install_signal_handlers(loop, self.stop) if handle_signals else []
        io = concurrent.futures.ThreadPoolExecutor(1, "asyncflow-task-worker-io")
        waiter = concurrent.futures.ThreadPoolExecutor(1, "asyncflow-task-worker-wait")
        local = ThreadPoolTaskRunner(self.limit, thread_name_prefix="asyncflow-task-worker")
        local.start_unscoped(loop)
        serving = sorted(self.tasks) + [f"{m}:*" for m in self.modules]
        if self.import_any:
            serving.append("any task (imported on demand)")
        logger.info("task worker %s serving %s from %s", self.name, serving, ch.url)
        try:
            await _Session(self, ch, local, io, waiter).run()
        finally:
            local.refuse_submissions()
            local.stop_unscoped()
            io.shutdown(wait=True)
            waiter.shutdown(wait=True)
            for sig in signals:
                loop.remove_signal_handler(sig)
            release(ch)
            self._loop = self.wake = None
            logger.info("task worker %s stopped", self.name)

    def served(self, key: str) -> Any:
        """The task served for `key`; with `import_any`, imported on first use. An
        ImportError naming the task, its module and this worker if there is none."""
        found = self.tasks.get(key)
        if found is not None:
            return found
        if self.import_any:
            found = self.tasks[key] = import_task(key, self.name)
            return found
        module, _, qualname = key.partition(":")
        names = sorted(k.partition(":")[2] for k in self.tasks if k.startswith(f"{module}:"))
        raise ImportError(
            f"task {qualname!r} is not in module {module!r} on task worker {self.name} "
            f"(it serves: {', '.join(names) or 'nothing from it'})",
            name=module,
        )

    def task_for(self, call: Call) -> Any:
        """The task to execute for `call`: the served one without its hooks (they run
        in the submitter), with the options the submitter changed."""
        task = self.served(call.key)
        if call.options is None:
            found = self._copies.get(call.key)
            if found is None:
                found = self._copies[call.key] = task.with_options(on_completion=[], on_failure=[])
            return found
        return task.with_options(**call.options, on_completion=[], on_failure=[])


class _Session:
    """One `serve()`: the claim loop, the renewals and the runs held."""

    def __init__(
        self,
        worker: TaskWorker,
        ch: Channel,
        local: ThreadPoolTaskRunner,
        io: concurrent.futures.Executor,
        waiter: concurrent.futures.Executor,
    ) -> None:
        self.worker = worker
        self.channel = ch
        self.broker = ch.broker
        self.local = local
        self.io = io
        self.waiter = waiter
        self.held = worker.held
        self.handlers: set[asyncio.Task[None]] = set()
        self.waiting: asyncio.Future[None] | None = None
        self.keys = list(worker.tasks)
        self.renew_due = asyncio.Event()  # a lease got shorter: look at the schedule again
        self.purge_at = 0.0  # on the loop's clock: the first claim purges first

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.io, lambda: fn(*args, **kwargs))

    def wake(self) -> None:
        wake = self.worker.wake
        if wake is not None:
            wake.set()

    async def run(self) -> None:
        renewer = asyncio.ensure_future(self.renew_forever())
        try:
            await self.claim_until_stopped()
        finally:
            try:
                await self.shut_down()
            finally:
                renewer.cancel()
                await asyncio.gather(renewer, return_exceptions=True)
                if self.waiting is not None:
                    await asyncio.gather(self.waiting, return_exceptions=True)

    # ---- claiming ------------------------------------------------------------------------
    async def claim_until_stopped(self) -> None:
        worker, wake = self.worker, self.worker.wake
        assert wake is not None
        stopping = worker.stopping
        while not stopping.is_set():
            await self.purge_if_due()
            free = worker.limit - len(self.held)
            if free > 0:
                deliveries = await self.call(
                    self.broker.claim,
                    worker.name,
                    self.keys,
                    lease_seconds=worker.lease_seconds,
                    limit=free,
                    modules=worker.modules,
                    any_key=worker.import_any,
                )
                if stopping.is_set():  # stopped meanwhile: hand them straight back
                    for delivery in deliveries:
                        await self.call(self.broker.release, delivery)
                    return
                for delivery in deliveries:
                    self.start(delivery)
                if deliveries:
                    continue
                self.wait_for_broker()
            wake.clear()
            if not stopping.is_set():
                await wake.wait()

    async def purge_if_due(self) -> None:
        """Forget the runs final for over `keep_results_seconds` (see the docstring)."""
        keep = self.worker.keep_results_seconds
        now = asyncio.get_running_loop().time()
        if keep is None or now < self.purge_at:
            return
        self.purge_at = now + purge_interval(keep)
        try:
            removed = await self.call(self.broker.purge, keep)
        except Exception:  # a broker hiccup must not stop the worker: next time
            logger.exception("task worker %s could not purge old runs", self.worker.name)
            return
        if removed:
            name = self.worker.name
            logger.info("task worker %s forgot %d run(s) final for over %s s", name, removed, keep)

    def wait_for_broker(self) -> None:
        """Wake the claim loop when the broker changes (a blocking wait, on its thread)."""
        if self.waiting is not None:
            return
        loop = asyncio.get_running_loop()
        self.waiting = loop.run_in_executor(self.waiter, self.broker.wait, WAIT_SECONDS)

        def done(_: Any) -> None:
            self.waiting = None
            self.wake()

        self.waiting.add_done_callback(done)

    def start(self, delivery: Delivery) -> None:
        now = asyncio.get_running_loop().time()
        held = self.held[delivery.run_id] = _Held(delivery, self.worker.lease_seconds, now)
        handler = asyncio.ensure_future(self.handle(held))
        self.handlers.add(handler)
        handler.add_done_callback(self.handlers.discard)

    # ---- one run -------------------------------------------------------------------------
    async def handle(self, held: _Held) -> None:
        delivery = held.delivery
        try:
            result = await self.execute(held)
            if result is None or held.lost or held.handed_back:
                return
            if not await self.call(self.broker.ack, delivery, result):
                logger.warning(
                    "task %s (run %s): a result was stored already; this late one is dropped",
                    delivery.task_key,
                    delivery.run_id,
                )
        except Exception:
            logger.exception(
                "task worker failed on run %s (%s)", delivery.run_id, delivery.task_key
            )
        finally:
            self.held.pop(delivery.run_id, None)
            self.wake()

    async def execute(self, held: _Held) -> bytes | None:
        """The sealed outcome of the run, or None when there is nothing to store."""
        delivery = held.delivery
        try:
            data = self.channel.unseal(delivery.run_id, delivery.payload)
        except BadSignature as exc:
            reason = f"the message failed its signature check and was not unpickled: {exc}"
            logger.error("task %s (run %s): %s", delivery.task_key, delivery.run_id, reason)
            await self.call(self.broker.dead_letter, delivery, reason)
            return None
        try:
            call = decode_call(data)
        except BaseException as exc:  # a reducer may raise anything: the run fails, we go on
            error = SerializationError(
                f"task {delivery.task_key}: its call could not be unpickled on the task "
                f"worker: {type(exc).__name__}: {exc}"
            )
            return self.failure(delivery, error)
        if call.key != delivery.task_key:  # the signed call is for another task
            reason = f"the message's task key does not match its signed call ({call.key})"
            logger.error("task %s (run %s): %s", delivery.task_key, delivery.run_id, reason)
            await self.call(self.broker.dead_letter, delivery, reason)
            return None
        if not await self.take_lease(held, call.lease_seconds):
            return None
        try:
            task = self.worker.task_for(call)
        except ImportError as exc:  # not in its module, or (--any) no such module
            logger.error("task %s (run %s): %s", delivery.task_key, delivery.run_id, exc)
            return self.failure(delivery, exc)
        held.future = fut = self.local.submit(task, call.parameters)
        await fut.wait_async()
        return self.seal(delivery, encode_future(fut))

    def failure(self, delivery: Delivery, error: BaseException) -> bytes:
        """The sealed outcome of a run that failed before its task could start."""
        return self.seal(
            delivery, encode_outcome(delivery.task_key, failed_state(error), error=error)
        )

    def seal(self, delivery: Delivery, outcome: bytes) -> bytes:
        what = f"the result of task {delivery.task_key}"
        try:
            return self.channel.seal(delivery.run_id, outcome, what, None)
        except PayloadTooLarge as exc:  # the run fails, saying so
            failure = encode_outcome(delivery.task_key, failed_state(exc), error=exc)
            return self.channel.seal(delivery.run_id, failure, what, None)

    # ---- leases --------------------------------------------------------------------------
    async def take_lease(self, held: _Held, lease_seconds: float | None) -> bool:
        """Renew the claim to the lease the call carries (None, or the worker's own:
        nothing to do); False if the lease was lost meanwhile."""
        if lease_seconds is None or lease_seconds == held.lease:
            return True
        held.lease = lease_seconds
        lease = await self.call(self.broker.renew, held.delivery, lease_seconds)
        held.renew_at = asyncio.get_running_loop().time() + lease_seconds / 3
        self.renew_due.set()  # the renewer may be asleep until a later deadline
        self.on_lease(held, lease)
        return not held.lost

    async def renew_forever(self) -> None:
        """Renew each held lease at a third of its length (runs due together are
        renewed in one call to the I/O thread)."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            due = [h for h in self.held.values() if h.renew_at <= now]
            if due:
                leases = await self.call(self.renew_all, [(h.delivery, h.lease) for h in due])
                renewed = loop.time()
                for h, lease in zip(due, leases, strict=True):
                    h.renew_at = renewed + h.lease / 3
                    self.on_lease(h, lease)
            nearest = min((h.renew_at for h in self.held.values()), default=None)
            idle = self.worker.lease_seconds / 3  # a run claimed now is due no sooner
            pause = idle if nearest is None else max(0.0, nearest - loop.time())
            self.renew_due.clear()
            timer = loop.call_later(min(pause, idle), self.renew_due.set)
            try:
                await self.renew_due.wait()
            finally:
                timer.cancel()

    def renew_all(self, due: list[tuple[Delivery, float]]) -> list[Lease]:
        return [self.broker.renew(delivery, lease) for delivery, lease in due]

    def on_lease(self, held: _Held, lease: Lease) -> None:
        if lease is Lease.HELD:
            return
        if self.held.get(held.delivery.run_id) is not held:  # acked meanwhile: not lost
            return
        if lease is Lease.LOST and not held.lost:
            held.lost = True
            logger.warning(
                "task %s (run %s): this worker lost its lease (another worker took "
                "the run over); its result will be dropped",
                held.delivery.task_key,
                held.delivery.run_id,
            )
        if held.future is not None:  # cancel requested, or lost: stop it if we can
            held.future.cancel()

    # ---- shutting down -----------------------------------------------------------------
    async def shut_down(self) -> None:
        """Finish within the grace period; hand back what is still running then."""
        if self.handlers:
            await asyncio.wait(set(self.handlers), timeout=self.worker.grace_seconds)
        left = list(self.held.values())
        for h in left:
            h.handed_back = True
            await self.call(self.broker.release, h.delivery)
        if left:
            logger.warning(
                "task worker %s handed back %d unfinished run(s)", self.worker.name, len(left)
            )
            self.local.abandon("the task worker shut down")
        if self.handlers:
            await asyncio.gather(*self.handlers, return_exceptions=True)


def _install_signal_handlers(
    loop: asyncio.AbstractEventLoop, stop: Callable[[], None]
) -> list[int]:
    """SIGTERM and SIGINT stop the worker (main thread only); the signals set."""
    if threading.current_thread() is not threading.main_thread():
        return []
    installed: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop)
        except (NotImplementedError, RuntimeError, ValueError):  # no such support here
            continue
        installed.append(sig)
    return installed
