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
   successful ones in one `client.gather` per batch, and reports each attempt's
   outcome to the run (`report_value` / `report_error` / `report_crash`), which
   starts or skips its dependents exactly as for the thread runner. Errors keep their
   type; a `KilledWorker` (the worker died running the task) is a crash: retried as
   the task's retry policy says, else CRASHED with the `KilledWorker` as `__cause__`.

The run's life (attempts, retries and their delays, deadline, cancellation) is the
core's, through the runner author's API (docs/writing-a-runner.md): this runner ships
one attempt at a time (`run.begin_attempt()`, `run.call.parts()`) and resubmits when
the core says a retry is due (`run.retry_later`). A Dask future can always be
cancelled, so `can_stop` says yes while one is out: a cancel or the deadline ends the
run at once, as the core decides, and its Dask future is cancelled (a worker thread
already running it runs on).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
import uuid
import weakref
from collections.abc import Callable
from typing import Any

import distributed

from .._core import (
    Deferred,
    ExitInWorker,
    ReturnedState,
    Run,
    SerializationError,
    State,
    TaskCrashed,
    TaskFuture,
    awaitable_result,
    consume_generator,
    has_dependents,
    is_deferred,
    load_deferred,
)
from ._base import TaskRunner

__all__ = ("DaskTaskRunner",)

logger = logging.getLogger("asyncflow")

# distributed is only partly typed: its client and futures are handled as Any here.
_Client: Any = distributed.Client

_STOP = object()  # tells the completion thread to finish


def _run_on_worker(fn: Callable[..., Any], is_async: bool, args: Any, kwargs: Any) -> Any:
    """What a Dask worker executes: the task's function; an async one on a fresh loop.

    A returned `State` is raised as `ReturnedState`: a value with dependents stays on
    the cluster unseen, so the state would be handed on as a value; the core ends the
    run as the state says either way."""
    try:
        if not is_async:
            value = consume_generator(fn(*args, **kwargs))
        else:

            async def main() -> Any:
                return await awaitable_result(fn(*args, **kwargs))

            value = asyncio.run(main())
    except SystemExit as exc:  # Dask lets SystemExit kill its worker: carry it back instead
        raise ExitInWorker(exc.code) from None
    if isinstance(value, State):
        raise ReturnedState(value)
    return value


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
        # run -> the Dask future of its current attempt; dropped when the run is final.
        self._attempts: dict[Run, Any] = {}
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
        lazy = [fut for fut in list(self._results) if is_deferred(fut)]
        if not lazy or self._client is None:
            return
        fetched = self._gather([self._results[fut] for fut in lazy])
        for fut, (value, error) in zip(lazy, fetched, strict=True):
            if error is None:
                load_deferred(fut, value)
            else:
                logger.error("the value of task %r is lost: %s", fut.name, error)

    def _gather(self, remotes: list[Any]) -> list[tuple[Any, Exception | None]]:
        """`(value, None)` or `(None, error)` per Dask future: one `gather` for all,
        or, when one was lost, one fetch each, keeping what can be fetched."""
        try:
            return [(value, None) for value in self.client.gather(remotes)]
        except Exception:
            pass
        out: list[tuple[Any, Exception | None]] = []
        for remote in remotes:
            try:
                out.append((remote.result(), None))
            except Exception as exc:
                out.append((None, exc))
        return out

    def _close_owned_cluster(self) -> None:
        cluster, self._owned_cluster = self._owned_cluster, None
        if cluster is not None:
            cluster.close()

    # ---- running -----------------------------------------------------------------------
    def start_run(self, run: Run) -> None:
        """Ship the run's next attempt (its first, and each retry the core asks for)."""
        client = self._client
        if client is None:
            run.abandon("cancelled: its runner shut down before it could run")
            return
        if not run.begin_attempt():  # stopped meanwhile (in a retry delay, say)
            return
        try:
            # Only the function travels, not the Task (its hooks, limits and policies
            # stay here); upstreams completed on this runner travel as Dask futures.
            fn, args, kwargs = run.call.parts(by_name=True, stand_in=self._results.get)
            key = f"{run.name}-{uuid.uuid4().hex}"
            try:
                remote = client.submit(_run_on_worker, fn, run.is_async, args, kwargs, key=key)
            except TypeError as exc:  # Dask could not serialize the function or arguments
                raise SerializationError(
                    f"task {run.name!r} could not be sent to Dask (its function and "
                    f"arguments must be picklable): {_describe_error(exc)}"
                ) from exc
        except Exception as exc:
            self._retry(run, run.report_error(exc))
            return
        self._attempts[run] = remote
        if run.future.done() and self._attempts.pop(run, None) is not None:
            # Stopped while it was being sent (`release_run` found no Dask future yet).
            self._queue.put(remote)
            return
        put = self._queue.put  # Dask's callback thread only queues the finished future
        remote.add_done_callback(lambda remote: put((run, remote)))

    def _retry(self, run: Run, delay: float | None) -> None:
        if delay is not None:  # the core says: another attempt, after `delay` s
            run.retry_later(delay, self.start_run)

    def can_stop(self, run: Run) -> bool:
        # Every attempt this runner began can be stopped: see `stop_running`.
        return True

    def stop_running(self, run: Run) -> None:
        # Any report ends the run now, as the core decided (Cancelled or TimedOut);
        # `release_run` then cancels its Dask future, whose late outcome is stale.
        run.report_crash(TaskCrashed(f"task {run.name!r} was stopped on the Dask cluster"))

    def release_run(self, run: Run) -> None:
        remote = self._attempts.pop(run, None)
        if remote is not None and not remote.done():
            # Final while its Dask task still runs (timed out, cancelled): cancel it there.
            # Cancelling blocks on the scheduler, so the completion thread does it.
            self._queue.put(remote)
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
            finished: list[tuple[Run, Any]] = []
            for item in items:
                if item is _STOP:
                    stop = True
                elif isinstance(item, tuple):
                    finished.append(item)
                else:  # a Dask future to cancel (its run was cancelled or timed out)
                    try:
                        item.cancel()
                    except Exception:  # pragma: no cover  (the cluster went away)
                        logger.debug("cancelling %r failed", item, exc_info=True)
            if finished:
                self._complete_batch(finished)

    def _complete_batch(self, finished: list[tuple[Run, Any]]) -> None:
        # Only each run's current attempt counts: others are stale (final, or retried).
        current: list[tuple[Run, Any]] = [
            (run, remote) for run, remote in finished if self._attempts.get(run) is remote
        ]
        done = [item for item in current if item[1].status == "finished"]
        # A value with dependents registered stays on the cluster (they get its Dask
        # future; it is fetched only if someone reads it). The others (leaves, likely
        # read by the caller) are fetched now, one `gather` for the whole batch.
        for run, remote in done:
            if has_dependents(run.future):
                self._results[run.future] = remote
                run.report_value(Deferred(functools.partial(_load_remote, run.name, remote)))
        self._report_fetched([item for item in done if not has_dependents(item[0].future)])
        for run, remote in current:
            status = remote.status
            if status == "error":
                self._failed_attempt(run, remote)
            elif status == "cancelled":
                self._crashed(run, "its Dask future was cancelled on the cluster")
            elif status != "finished":  # "lost": its data went with a worker
                self._crashed(run, f"its Dask future {remote.key!r} is {status}")

    def _report_fetched(self, fetch: list[tuple[Run, Any]]) -> None:
        if not fetch:
            return
        fetched = self._gather([remote for _, remote in fetch])
        for (run, remote), (value, error) in zip(fetch, fetched, strict=True):
            if error is not None:
                self._crashed(run, f"its value could not be fetched: {error!r}", error)
                continue
            self._results[run.future] = remote
            run.report_value(value)

    def _crashed(self, run: Run, why: str, cause: BaseException | None = None) -> None:
        err = TaskCrashed(f"task {run.name!r} crashed: {why}")
        err.__cause__ = cause
        self._retry(run, run.report_crash(err))

    def _failed_attempt(self, run: Run, remote: Any) -> None:
        exc = remote.exception()
        tb = remote.traceback()
        if tb is not None:
            exc = exc.with_traceback(tb)
        if isinstance(exc, distributed.KilledWorker):  # the worker died running it
            self._retry(run, run.report_crash(exc))  # "crashed: KilledWorker: ..."
        else:
            self._retry(run, run.report_error(exc))


def _load_remote(name: str, remote: Any) -> Any:
    """Fetch a value left on the cluster (the `Deferred` of a run with dependents)."""
    try:
        return remote.result()
    except Exception as exc:
        raise RuntimeError(
            f"the value of task {name!r} was left on the Dask cluster and cannot be "
            f"fetched any more: {type(exc).__name__}: {exc}"
        ) from exc
