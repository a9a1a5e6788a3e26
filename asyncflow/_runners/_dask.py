"""`DaskTaskRunner`: task runs on a Dask cluster (`dask.distributed`).

Imported only through `asyncflow.contrib.dask` (or the lazy name in
`asyncflow.task_runners`): importing asyncflow never imports dask.

How a run travels:

1. The engine calls `start_run` once the run's upstreams are final. The run is marked
   RUNNING and submitted with `client.submit`. A parameter that is the future of a
   run completed on this same runner is passed as that run's *Dask* future, so the
   value moves worker to worker (or stays on its worker) instead of being uploaded
   again from the client.
2. Dask calls our done callback (on its own callback thread); it only queues the
   finished Dask future for the runner's completion thread.
3. The completion thread drains what has finished, fetches the values of the
   successful ones in one `client.gather` per batch, and completes the runs
   (`_engine.complete`), which starts or skips their dependents exactly as for the
   thread runner. Errors keep their type; a `KilledWorker` (the worker died running
   the task) ends the run CRASHED, the `KilledWorker` kept as `__cause__`.

The run's life (attempts, retries, deadline, cancellation) is the core's: this runner
reports each attempt's outcome (`report_value` / `report_error` / `report_crash`) and
resubmits when the core says a retry is due (`retry_later`). At the deadline, or on a
cancel, the run ends as the core decides and its Dask future is cancelled.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
import uuid
import weakref
from collections.abc import Callable
from typing import Any

import distributed

from .._arguments import resolve
from .._core import _engine
from .._core._exceptions import ExitInWorker, SerializationError, TaskCrashed
from .._core._future import Deferred, TaskFuture
from ._base import Call, TaskRunner
from ._by_name import task_function_ref

__all__ = ("DaskTaskRunner",)

# distributed is only partly typed: its client and futures are handled as Any here.
_Client: Any = distributed.Client

_STOP = object()  # tells the completion thread to finish


def _run_on_worker(fn: Callable[..., Any], is_async: bool, args: Any, kwargs: Any) -> Any:
    """What a Dask worker executes: the task's function; an async one on a fresh loop."""
    try:
        if not is_async:
            return fn(*args, **kwargs)

        async def main() -> Any:
            return await fn(*args, **kwargs)

        return asyncio.run(main())
    except SystemExit as exc:  # Dask lets SystemExit kill its worker: carry it back instead
        raise ExitInWorker(exc.code) from None


def _call_parts(
    call: Call, parameters: dict[str, Any]
) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """The function to ship and its arguments. Only the function travels, not the Task
    object (its hooks, limits and policies stay on the client)."""
    task = call.task
    args, kwargs = task.split(parameters)
    return task_function_ref(task) or task.fn, args, kwargs


def _describe_error(exc: BaseException) -> str:
    """The innermost cause of a serialization error (names the unpicklable type)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return f"{type(exc).__name__}: {exc}"


def _import_class(spec: Any) -> Any:
    if not isinstance(spec, str):
        return spec
    module_name, _, attr = spec.rpartition(".")
    if not module_name:
        raise ValueError(f"cluster_class must be a class or 'module.Class', got {spec!r}")
    import importlib

    return getattr(importlib.import_module(module_name), attr)


class DaskTaskRunner(TaskRunner):
    """Runs sync and async tasks on a Dask cluster.

    - nothing given: a temporary `distributed.LocalCluster(**cluster_kwargs)` is started
      when the runner is entered and closed when it exits (`cluster_class` picks
      another class, given as a class or a `"module.Class"` string);
    - `address="tcp://host:8786"`: connect to a running scheduler (left running);
    - `cluster=obj`: use that cluster object (left running).

    `client_kwargs` go to `distributed.Client`. `duplicate()` keeps every setting.
    """

    def __init__(
        self,
        cluster: Any = None,
        address: str | None = None,
        cluster_class: Any = None,
        cluster_kwargs: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if cluster is not None and address is not None:
            raise ValueError("DaskTaskRunner: give either cluster= or address=, not both")
        if (cluster is not None or address is not None) and (
            cluster_class is not None or cluster_kwargs
        ):
            raise ValueError(
                "DaskTaskRunner: cluster_class/cluster_kwargs describe a temporary cluster; "
                "they cannot be combined with cluster= or address="
            )
        if address is not None and not isinstance(address, str):
            raise TypeError(f"address must be a string like 'tcp://host:8786', got {address!r}")
        self.cluster = cluster
        self.address = address
        self.cluster_class = cluster_class
        self.cluster_kwargs: dict[str, Any] = dict(cluster_kwargs or {})
        self.client_kwargs: dict[str, Any] = dict(client_kwargs or {})
        self._client: Any = None
        self._owned_cluster: Any = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # run -> (its current Dask future, attempt number); dropped when the run is final.
        self._attempts: dict[_engine.Run, tuple[Any, int]] = {}
        # A completed run's Dask future, while its asyncflow future lives: lets a
        # downstream on this runner take the value from the cluster.
        self._results: weakref.WeakKeyDictionary[TaskFuture[Any], Any] = weakref.WeakKeyDictionary()

    @property
    def client(self) -> Any:
        """The `distributed.Client` of a started runner."""
        if self._client is None:
            raise RuntimeError(f"{self.name} is not started: use `with runner:` first")
        return self._client

    def duplicate(self) -> DaskTaskRunner:
        return type(self)(
            cluster=self.cluster,
            address=self.address,
            cluster_class=self.cluster_class,
            cluster_kwargs=dict(self.cluster_kwargs),
            client_kwargs=dict(self.client_kwargs),
        )

    def __repr__(self) -> str:
        if self.address is not None:
            where = f"address={self.address!r}"
        elif self.cluster is not None:
            where = f"cluster={self.cluster!r}"
        else:
            cls = self.cluster_class or "LocalCluster"
            name = getattr(cls, "__name__", cls)
            where = f"cluster_class={name!s}, cluster_kwargs={self.cluster_kwargs!r}"
        return f"DaskTaskRunner({where})"

    # ---- lifecycle ---------------------------------------------------------------------
    def _start_resources(self) -> None:
        cluster = self.cluster
        if self.address is not None:
            client = _Client(self.address, **self.client_kwargs)
        else:
            if cluster is None:
                cls = _import_class(self.cluster_class) or distributed.LocalCluster
                cluster = self._owned_cluster = cls(**self.cluster_kwargs)
            try:
                client = _Client(cluster, **self.client_kwargs)
            except BaseException:
                self._close_owned_cluster()
                raise
        self._client = client
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._complete_loop, name="asyncflow-dask-completion", daemon=True
        )
        self._thread.start()

    def _stop_resources(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join()
        self._attempts.clear()
        try:
            self._fetch_values_left_on_cluster()
        finally:
            self._results.clear()
        client, self._client = self._client, None
        try:
            if client is not None:
                client.close()
        finally:
            self._close_owned_cluster()

    def _fetch_values_left_on_cluster(self) -> None:
        """Values still on the cluster whose futures are alive come home (one gather)
        before the client closes; values nobody holds are simply released."""
        lazy = [fut for fut in list(self._results) if type(fut._value) is Deferred]
        if not lazy or self._client is None:
            return
        try:
            values = self._client.gather([self._results[fut] for fut in lazy])
        except Exception:  # one was lost: keep what can be fetched
            for fut in lazy:
                try:
                    fut._get_value()
                except Exception as exc:
                    _engine.logger.error("the value of task %r is lost: %s", fut.name, exc)
            return
        for fut, value in zip(lazy, values, strict=True):
            fut._value = value

    def _close_owned_cluster(self) -> None:
        cluster, self._owned_cluster = self._owned_cluster, None
        if cluster is not None:
            cluster.close()

    # ---- running -----------------------------------------------------------------------
    def start_run(self, run: _engine.Run) -> None:
        if self._client is None:
            _engine.cancelled(run, "cancelled: its runner shut down before it started")
            return
        self._retry(run)

    def _parameters(self, call: Call) -> dict[str, Any]:
        """Resolved parameters, with this runner's completed upstreams as Dask futures."""
        if not call.rebuild:
            return call.parameters
        results = self._results
        out: dict[str, Any] = {}
        for name, value in call.parameters.items():
            if isinstance(value, TaskFuture) and value._exception is None:
                remote = results.get(value)
                if remote is not None:
                    value._observed = True
                    out[name] = remote
                    continue
            out[name] = resolve(value)
        return out

    def _submit_attempt(self, run: _engine.Run, attempt: int) -> None:
        client = self._client
        if client is None:
            _engine.cancelled(run, "cancelled: its runner shut down before it could retry")
            return
        call = run.call
        try:
            if not isinstance(call, Call):
                raise TypeError(f"{self.name} can only run asyncflow task runs, got {call!r}")
            fn, args, kwargs = _call_parts(call, self._parameters(call))
            key = f"{run.future.name}-{uuid.uuid4().hex}"
            try:
                remote = client.submit(_run_on_worker, fn, run.is_async, args, kwargs, key=key)
            except TypeError as exc:  # Dask could not serialize the function or arguments
                err = SerializationError(
                    f"task {run.future.name!r} could not be sent to Dask (its function and "
                    f"arguments must be picklable): {_describe_error(exc)}"
                )
                err.__cause__ = exc
                raise err from exc
        except BaseException as exc:
            self._after_failure(run, _engine.report_error(run, exc))
            return
        self._attempts[run] = (remote, attempt)
        remote.add_done_callback(_Finished(self._queue, run))

    def can_stop(self, run: _engine.Run) -> bool:
        return run in self._attempts

    def stop_running(self, run: _engine.Run) -> None:
        # The run ends now, as the core decided (Cancelled or TimedOut); `release_run`
        # then cancels its Dask future, and the late outcome from the cluster is stale.
        _engine.report_crash(run, TaskCrashed(f"task {run.name!r} was stopped on the Dask cluster"))

    def release_run(self, run: _engine.Run) -> None:
        entry = self._attempts.pop(run, None)
        if entry is not None and not entry[0].done():
            # Final while its Dask task still runs (timed out, cancelled): cancel it there.
            # Cancelling blocks on the scheduler, so the completion thread does it.
            self._queue.put(entry[0])
        super().release_run(run)

    # ---- completion --------------------------------------------------------------------
    def _complete_loop(self) -> None:
        q = self._queue
        stop = False
        while not stop:
            items = [q.get()]
            while True:
                try:
                    items.append(q.get_nowait())
                except queue.Empty:
                    break
            finished: list[tuple[_engine.Run, Any]] = []
            for item in items:
                if item is _STOP:
                    stop = True
                elif isinstance(item, tuple):
                    finished.append(item)
                else:  # a Dask future to cancel (its run was cancelled or timed out)
                    try:
                        item.cancel()
                    except Exception:  # pragma: no cover  (the cluster went away)
                        _engine.logger.debug("cancelling %r failed", item, exc_info=True)
            if finished:
                self._complete_batch(finished)

    def _complete_batch(self, finished: list[tuple[_engine.Run, Any]]) -> None:
        current = []
        for run, remote in finished:
            entry = self._attempts.get(run)
            if entry is not None and entry[0] is remote:  # else stale: final, or retried
                current.append((run, remote, entry[1]))
        done = [item for item in current if item[1].status == "finished"]
        # A value with dependents registered stays on the cluster (they get its Dask
        # future; it is fetched only if someone reads it). The others (leaves, likely
        # read by the caller) are fetched now, one `gather` for the whole batch.
        on_cluster = [item for item in done if item[0].future._has_dependents]
        fetch = [item for item in done if not item[0].future._has_dependents]
        values: list[Any] | None = None
        if fetch:
            try:
                values = self.client.gather([remote for _, remote, _ in fetch])
            except Exception:
                values = None  # one was lost: fetch them one by one below
        for run, remote, _ in on_cluster:
            fut = run.future
            self._results[fut] = remote
            _engine.report_value(run, Deferred(functools.partial(_load_remote, fut.name, remote)))
        for i, (run, remote, _) in enumerate(fetch):
            if values is not None:
                value = values[i]
            else:
                try:
                    value = remote.result()
                except Exception as exc:
                    self._crashed(run, f"its value could not be fetched: {exc!r}", exc)
                    continue
            self._results[run.future] = remote
            _engine.report_value(run, value)
        for run, remote, _ in current:
            status = remote.status
            if status == "finished":
                continue
            if status == "error":
                self._failed_attempt(run, remote)
            elif status == "cancelled":
                self._crashed(run, "its Dask future was cancelled on the cluster")
            else:  # "lost": its data went with a worker
                self._crashed(run, f"its Dask future {remote.key!r} is {status}")

    def _crashed(self, run: _engine.Run, why: str, cause: BaseException | None = None) -> None:
        err = TaskCrashed(f"task {run.name!r} crashed: {why}")
        err.__cause__ = cause
        self._after_failure(run, _engine.report_crash(run, err))

    def _failed_attempt(self, run: _engine.Run, remote: Any) -> None:
        exc = remote.exception()
        assert exc is not None
        tb = remote.traceback()
        if tb is not None:
            exc = exc.with_traceback(tb)
        if isinstance(exc, distributed.KilledWorker):  # the worker died running it
            self._crashed(run, f"{type(exc).__name__}: {exc}", exc)
            return
        self._after_failure(run, _engine.report_error(run, exc))

    def _after_failure(self, run: _engine.Run, delay: float | None) -> None:
        if delay is not None:  # the core says: another attempt, after `delay`
            _engine.retry_later(run, delay, self._retry)

    def _retry(self, run: _engine.Run) -> None:
        attempt = _engine.begin(run)  # arms the run's deadline at attempt 1
        if attempt:
            self._submit_attempt(run, attempt)


def _load_remote(name: str, remote: Any) -> Any:
    """Fetch a value left on the cluster (the `Deferred` of a run with dependents)."""
    try:
        return remote.result()
    except Exception as exc:
        raise RuntimeError(
            f"the value of task {name!r} was left on the Dask cluster and cannot be "
            f"fetched any more: {type(exc).__name__}: {exc}"
        ) from exc


class _Finished:
    """Dask done callback (runs on Dask's callback thread): queue the finished future."""

    __slots__ = ("queue", "run")

    def __init__(self, q: queue.SimpleQueue[Any], run: _engine.Run) -> None:
        self.queue = q
        self.run = run

    def __call__(self, remote: Any) -> None:
        self.queue.put((self.run, remote))
