"""`WorkerTaskRunner`: every run goes through a broker to task workers.

A run's whole life, attempts included, happens on a worker (`_worker.py`): the
worker executes the task with its own `retries`, `retry_delay_seconds`,
`retry_condition_fn` and `timeout_seconds`, as any runner would in-process, and
stores the final state it reached. So the submitter's side of a run never begins an
attempt: `start_run` seals the call and enqueues it, the watcher (`_watch.py`)
reports `Running` once a worker holds the run and then the final state the worker
computed, through `Run.report_remote`, which neither retries nor arms a second
deadline. What stays with the submitter: upstream futures (resolved before the call
is sent), `max_concurrency`, and the task's hooks (they run where the future is).

Stopping a run (`future.cancel()`, a failing flow, a flow's deadline, Ctrl-C):

- it looks queued: `withdraw` cancels it in the broker, which answers atomically what
  it found (the watcher may not have seen it yet). Still queued: it ends now
  (Cancelled, or TimedOut for a flow deadline) and no worker runs it. Ended already:
  it ends with its outcome. Taken: it is reported Running, and the stop treats it as
  one of the next two;
- async and held by a worker: `can_stop` says yes and `stop_running` asks the broker
  to cancel it; the worker cancels the asyncio task for real and the run ends as the
  stop says once the worker's outcome arrives;
- sync and held by a worker: a thread cannot be interrupted, so as with
  `ThreadPoolTaskRunner` a plain cancel is refused and a deadline or an interrupt ends
  the run here at once (its late result is dropped); the worker is still asked to
  cancel it.

Tasks travel by key (`"module:qualname"`, see `_wire.py`): a task the workers cannot
import (defined in `__main__` or inside a function) fails at `.submit()` with an
error naming it.

Futures outlive their submitter: `run_id(future)` names a run, and
`WorkerTaskRunner(broker=url).future(run_id)` (or `asyncflow.task_worker.future`)
rebuilds its future in any process, watched like any other.
"""

from __future__ import annotations

import contextvars
import os
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from .._broker import RunStatus, check_lease_seconds
from .._core import (
    NO_OPTIONS,
    Run,
    State,
    StateType,
    TaskFuture,
    check_count,
)
from .._runners._base import TaskRunner
from .._runners._current import current_runner
from ._channel import Channel, acquire, release
from ._watch import watcher
from ._wire import Call, encode_call, failed_state, find_task, shipped_options, task_key

__all__ = ("WorkerTaskRunner", "apply_async", "future_of", "run_id")

DEFAULT_MAX_DELIVERIES = 3

# The run id of every future sent to workers (or rebuilt from one), while it lives.
_run_ids: weakref.WeakKeyDictionary[TaskFuture[Any], str] = weakref.WeakKeyDictionary()


def run_id(future: TaskFuture[Any]) -> str:
    """The broker's id of the run behind `future` (a future from a task worker runner)."""
    found = _run_ids.get(future)
    if found is None:
        raise ValueError(
            f"{future!r} was not sent to task workers (use task.delay() or WorkerTaskRunner), "
            "or has not been sent yet (it waits for its upstreams)"
        )
    return found


class WorkerTaskRunner(TaskRunner):
    """Sends every run to task workers through the broker at `broker` (a URL; None:
    `ASYNCFLOW_BROKER_URL`, else a SQLite file in the user's cache directory).

    `max_deliveries`: how many times a run is handed to a worker whose lease then
    expires (it died) before it is dead-lettered and its future ends CRASHED.
    `max_payload_bytes`: the limit on a call's pickled size (None: the broker's
    default, 16 MiB, or `ASYNCFLOW_MAX_PAYLOAD_BYTES`).
    `lease_seconds`: how long a worker that stops renewing (it died) keeps a run
    before another worker gets it; the worker renews at a third of it. None: the
    worker's own `--lease` (30 s by default).
    """

    def __init__(
        self,
        broker: str | None = None,
        *,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        max_payload_bytes: int | None = None,
        lease_seconds: float | None = None,
    ) -> None:
        super().__init__()
        if broker is not None and not isinstance(broker, str):
            raise TypeError(f"broker must be a URL string, got {type(broker).__name__}: {broker!r}")
        self.broker_url = broker
        self.max_deliveries = check_count("max_deliveries", max_deliveries, minimum=1)
        if max_payload_bytes is not None:
            check_count("max_payload_bytes", max_payload_bytes, minimum=1)
        self.max_payload_bytes = max_payload_bytes
        if lease_seconds is not None:
            check_lease_seconds(lease_seconds)
            lease_seconds = float(lease_seconds)
        self.lease_seconds = lease_seconds
        self._channel: Channel | None = None
        self._ids: dict[Run, str] = {}
        self._keys: weakref.WeakKeyDictionary[Any, tuple[str, Any]] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"WorkerTaskRunner(broker={self.broker_url!r})"

    def duplicate(self) -> WorkerTaskRunner:
        return type(self)(
            self.broker_url,
            max_deliveries=self.max_deliveries,
            max_payload_bytes=self.max_payload_bytes,
            lease_seconds=self.lease_seconds,
        )

    @property
    def channel(self) -> Channel:
        """The broker (and its secret) while the runner is started."""
        if self._channel is None:
            raise RuntimeError(f"{self!r} is not started: use `with runner:` first")
        return self._channel

    def _start_resources(self) -> None:
        self._channel = acquire(self.broker_url)  # a bad URL fails here, at `with`

    def _stop_resources(self) -> None:
        self._ids.clear()  # every run is final; the watcher ends when it has none left
        ch, self._channel = self._channel, None
        if ch is not None:
            release(ch)

    # ---- submitting --------------------------------------------------------------------
    def _key(self, task: Any) -> tuple[str, Any]:
        """The task's key and the module-level task it names (checked once per task)."""
        found = self._keys.get(task)
        if found is None:
            key = task_key(task)
            module, qualname = key.split(":")
            found = self._keys[task] = (key, find_task(module, qualname, imported_only=True))
        return found

    def _launch(
        self,
        task: Any,
        params: dict[str, Any],
        ordering: Iterable[tuple[TaskFuture[Any], bool]] = (),
    ) -> TaskFuture[Any]:
        self._key(task)  # a task no worker can import fails here, at the call
        return super()._launch(task, params, ordering)

    def start_run(self, run: Run) -> None:
        ch = self.channel
        new_id = uuid.uuid4().hex
        try:
            key, payload = self._seal(ch, run, new_id)
        except Exception as exc:  # unpicklable, too large: this run fails, nothing is sent
            run.report_remote(failed_state(exc), None, exc)
            return
        self._ids[run] = new_id
        _run_ids[run.future] = new_id
        watching = watcher(ch)
        watching.watch(new_id, run)  # first: the watcher's feed position is before it
        try:
            ch.broker.enqueue(new_id, key, payload, max_deliveries=self.max_deliveries)
        except BaseException:
            watching.unwatch(new_id, run)
            self._ids.pop(run, None)
            raise
        if run.future.done():  # stopped while it was being sent: cancel it there
            # By id, not through `_forget`: its release may have run before the enqueue
            # and found nothing to cancel. A run that ended for real is final there.
            self._ids.pop(run, None)
            watching.unwatch(new_id, run)
            ch.broker.cancel(new_id)

    def _seal(self, ch: Channel, run: Run, new_id: str) -> tuple[str, bytes]:
        task = run.call.task
        key, original = self._key(task)
        # The task layer's call binds parameters by name (futures resolved): the worker
        # submits them as they are (`CallSpec` itself only promises `parts()`).
        parameters = run.call.resolved_parameters()  # type: ignore[attr-defined]
        call = Call(key, run.name, shipped_options(task, original), parameters, self.lease_seconds)
        data = encode_call(call)
        what = f"the call of task {run.name!r} ({key})"
        return key, ch.seal(new_id, data, what, self.max_payload_bytes)

    # ---- stopping ----------------------------------------------------------------------
    def withdraw(self, run: Run) -> None:
        run_id_ = self._ids.get(run)
        if run_id_ is not None:  # sent (or being sent): the broker says what it found
            watcher(self.channel).withdraw(run_id_, run)

    def can_stop(self, run: Run) -> bool:
        # An async run held by a worker is cancelled there for real (see the docstring).
        return run.is_async and run in self._ids

    def stop_running(self, run: Run) -> None:
        run_id_ = self._ids.get(run)
        if run_id_ is not None:
            self.channel.broker.cancel(run_id_)

    def release_run(self, run: Run) -> None:
        self._forget(run)
        super().release_run(run)

    def _forget(self, run: Run) -> None:
        """A run final here: if no outcome came from the broker (it was cancelled or
        timed out here), cancel it there too, so no worker starts it."""
        run_id_ = self._ids.pop(run, None)
        if run_id_ is not None and watcher(self.channel).unwatch(run_id_, run):
            self.channel.broker.cancel(run_id_)

    # ---- futures from run ids ------------------------------------------------------------
    def future(self, run_id: str) -> TaskFuture[Any]:
        """The future of run `run_id` in this runner's broker, in any process (the
        runner need not be started): awaitable, `.result()`-able, cancellable."""
        return future_of(run_id, self.broker_url)


class _Rebuilt:
    """The owner of a future rebuilt from a run id (nothing to start: it runs
    elsewhere already). Cancelling it while it is queued cancels it in the broker."""

    def __init__(self, ch: Channel, run_id: str) -> None:
        self.channel = ch
        self.run_id = run_id

    def start_run(self, run: Run) -> None:  # never called: the run is not submitted here
        raise AssertionError("a rebuilt run is not started")

    def withdraw(self, run: Run) -> None:
        watcher(self.channel).withdraw(self.run_id, run)

    def can_stop(self, run: Run) -> bool:
        return False

    def stop_running(self, run: Run) -> None:
        pass

    def release_run(self, run: Run) -> None:
        if watcher(self.channel).unwatch(self.run_id, run):
            self.channel.broker.cancel(self.run_id)


class _NoCall:
    """The call of a rebuilt run: it executes elsewhere, never here."""

    is_async = False
    task = None

    def __call__(self) -> Any:
        raise AssertionError("a rebuilt run is not called")

    def parts(
        self, by_name: bool = False, stand_in: Callable[[Any], Any] | None = None
    ) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
        raise AssertionError("a rebuilt run is not called")


def future_of(run_id_: str, url: str | None) -> TaskFuture[Any]:
    """A future for run `run_id_` in the broker at `url` (see `WorkerTaskRunner.future`)."""
    if not isinstance(run_id_, str):
        raise TypeError(f"run_id must be a string, got {type(run_id_).__name__}: {run_id_!r}")
    ch = acquire(url)
    try:
        return _rebuild(run_id_, ch)
    finally:
        release(ch)  # the watcher holds it while it watches the run


def _rebuild(run_id_: str, ch: Channel) -> TaskFuture[Any]:
    status = ch.broker.status(run_id_)
    if status is None:
        raise ValueError(f"broker {ch.url} has no run {run_id_!r}")
    fut: TaskFuture[Any] = TaskFuture(f"run {run_id_}")
    run = Run(fut, _NoCall(), NO_OPTIONS, _Rebuilt(ch, run_id_), contextvars.copy_context())
    _run_ids[fut] = run_id_
    if status.is_final:  # known now: a web app polling a run id sees it at once
        (outcome,) = ch.broker.outcomes([run_id_])
        watcher(ch).report(run, outcome)
        return fut
    if status is RunStatus.LEASED:
        run.report_remote(State(StateType.RUNNING))
    watcher(ch).watch(run_id_, run, check=True)  # it may finish before the feed's cursor
    return fut


# ---- .delay() / .apply_async(): from anywhere --------------------------------------------

_default_runners: dict[str | None, WorkerTaskRunner] = {}
_default_lock = threading.Lock()


def _runner_for_delay() -> WorkerTaskRunner:
    """The runner of `.delay()`: the current one if it sends to workers, else a
    process-wide one for the default broker, started on first use and never stopped
    (its runs outlive this process: nothing cancels them at exit)."""
    current = current_runner()
    if isinstance(current, WorkerTaskRunner) and current.started:
        return current
    with _default_lock:
        runner = _default_runners.get(None)
        if runner is None:
            runner = _default_runners[None] = WorkerTaskRunner()
            runner.start_unscoped()
    return runner


def _after_fork_in_child() -> None:
    _default_runners.clear()  # its channel and watcher belong to the parent


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def apply_async(
    task: Any, parameters: dict[str, Any], wait_for: Iterable[Any] | TaskFuture[Any] | None = None
) -> TaskFuture[Any]:
    """`task.delay()` / `task.apply_async()`: one run sent to task workers."""
    ordering = [wait_for] if isinstance(wait_for, TaskFuture) else wait_for
    return _runner_for_delay().submit_checked(task, parameters, ordering)
