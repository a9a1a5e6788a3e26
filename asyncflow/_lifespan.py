"""Embedding asyncflow in a web server: one shared engine per app, graceful shutdown.

Framework-free: this module speaks plain asyncio, so it works for any ASGI app
(Starlette, FastAPI, Quart, Litestar, a bare ASGI callable); `_asgi` holds the
middleware.

* `Engine` (made by `engine(...)`) is an async context manager for the app's
  lifespan. Entering it starts one `ThreadPoolTaskRunner` (or the runner you give) on
  the server's event loop and installs it as the process default, so `.submit()` and
  `.map()` from request handlers share its pool. `Engine` is also a Starlette-style
  lifespan factory: `Starlette(lifespan=engine(max_workers=16))`.
* `SharedTaskRunner` is the task runner for flows called from handlers:
  `@flow(task_runner=SharedTaskRunner())`. Each flow call still gets its own
  structured scope (it waits for, and on error cancels, only its own runs), but the
  runs execute on the shared runner instead of a pool per request.
* On exit the engine waits up to `grace_seconds` for every run still in flight (on
  the shared runner and in every flow scope using it), then cancels the rest: runs not
  started end CANCELLED, async runs are cancelled, runs on threads end CANCELLED
  (a thread cannot be killed: `asyncflow.check_cancelled()` lets a long sync task stop
  early; otherwise its daemon thread is abandoned and not joined), process runs are
  stopped by their runner. Idle worker threads are joined.

The runners are started unscoped (`TaskRunner.start_unscoped`): request handlers run
in other tasks (other contexts), so they reach them as the installed default or by
name (`_current`), not through a `with` block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections.abc import AsyncIterator, Mapping
from types import TracebackType

from ._core import CancelReason, Run, TaskFuture, check_timeout, drain_async, stop_runs, wait
from ._runners._base import TaskRunner
from ._runners._current import add_named_runners, install_default_runner, remove_named_runners
from ._runners._shared import SharedTaskRunner, scopes
from ._runners._thread import ThreadPoolTaskRunner

__all__ = ("Engine", "engine", "latest_engine")

logger = logging.getLogger("asyncflow")

THREAD_NAME = "asyncflow-web"
# After the grace period: how long cancelled async runs and the flow scopes that own
# them get to finish their cleanup (and send their error responses) before the pool
# stops. Everything they wait for is final by then, so this is rarely reached.
CLEANUP_SECONDS = 2.0

_latest: Engine | None = None  # the engine entered last: `ShutdownErrorMiddleware`'s default


def latest_engine() -> Engine | None:
    return _latest


def _check_grace(grace_seconds: object) -> float:
    """A timeout (`_validate.timeout`), kept as a float: inf (or None) waits for every run."""
    seconds = check_timeout("grace_seconds", grace_seconds)
    return math.inf if seconds is None else seconds


def _check_runner(what: str, runner: object) -> TaskRunner:
    if not isinstance(runner, TaskRunner):
        raise TypeError(f"{what} must be a TaskRunner instance, got {runner!r}")
    if isinstance(runner, SharedTaskRunner):
        raise TypeError(f"{what} cannot be a SharedTaskRunner (flows use it to reach the engine)")
    return runner


class Engine:
    """Shared task runners for a web app's lifetime. Make it with `engine(...)`.

    `async with engine:` (or `lifespan=engine` in Starlette/FastAPI) starts the runners
    on the running loop and installs the default one as the process default; leaving
    waits up to `grace_seconds` for runs still in flight, then cancels the rest.
    """

    def __init__(
        self,
        *,
        max_workers: int | None = None,
        grace_seconds: float = 30.0,
        task_runner: TaskRunner | None = None,
        runners: Mapping[str, TaskRunner] | None = None,
    ) -> None:
        if task_runner is not None and max_workers is not None:
            raise TypeError("give either max_workers or task_runner, not both")
        self.grace_seconds = _check_grace(grace_seconds)
        # Templates, as with @flow: each start uses fresh duplicates.
        default = (
            _check_runner("task_runner", task_runner)
            if task_runner is not None
            else ThreadPoolTaskRunner(max_workers)
        )
        self._templates: dict[str, TaskRunner] = {}
        for name, runner in (runners or {}).items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"runner names must be non-empty strings, got {name!r}")
            self._templates[name] = _check_runner(f"runners[{name!r}]", runner)
        self._default_template = default
        self._runner: TaskRunner | None = None
        self._runners: dict[str, TaskRunner] = {}
        self._previous: TaskRunner | None = None
        self._closing = False
        self._shutdown_started = False

    def __repr__(self) -> str:
        state = "running" if self._runner is not None else "stopped"
        extra = f" runners={self._templates!r}" if self._templates else ""
        return (
            f"<Engine {self._default_template!r}{extra} grace_seconds={self.grace_seconds:g} "
            f"{state}>"
        )

    @property
    def runner(self) -> TaskRunner:
        """The started default runner (RuntimeError when the engine is not running)."""
        if self._runner is None:
            raise RuntimeError("the asyncflow engine is not running: enter it in the lifespan")
        return self._runner

    @property
    def runners(self) -> dict[str, TaskRunner]:
        """The started named runners (empty when the engine is not running)."""
        return dict(self._runners)

    @property
    def running(self) -> bool:
        """True between the lifespan's startup and the end of its shutdown."""
        return self._runner is not None

    @property
    def closing(self) -> bool:
        """True from the moment shutdown begins until the engine has stopped."""
        return self._closing

    @property
    def shutdown_started(self) -> bool:
        """True from the moment shutdown begins until the engine is entered again: a
        handler's `TaskCancelled` in between is the shutdown's doing."""
        return self._shutdown_started

    def in_flight(self) -> int:
        """Runs accepted and not yet final, on the engine's runners and in flow scopes."""
        return len(_pending(self._all()))

    def _all(self) -> list[TaskRunner]:
        return [] if self._runner is None else [self._runner, *self._runners.values()]

    # ---- lifespan ----------------------------------------------------------------------
    def __call__(self, app: object) -> contextlib.AbstractAsyncContextManager[None]:
        """Starlette/FastAPI lifespan: `Starlette(lifespan=engine(...))`."""
        return self._lifespan()

    @contextlib.asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        async with self:
            yield

    async def __aenter__(self) -> Engine:
        global _latest
        if self._runner is not None:
            raise RuntimeError("this asyncflow engine is already running")
        loop = asyncio.get_running_loop()
        started: list[TaskRunner] = []
        try:
            runner = _start(self._default_template, loop, THREAD_NAME, started)
            named = {
                name: _start(template, loop, f"{THREAD_NAME}-{name}", started)
                for name, template in self._templates.items()
            }
            add_named_runners(named)
        except BaseException:
            for r in started:
                r.stop_unscoped()
            raise
        self._previous = install_default_runner(runner)
        self._runner, self._runners = runner, named
        self._closing = self._shutdown_started = False
        _latest = self
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        runners = self._all()
        if not runners:
            raise RuntimeError("this asyncflow engine is not running")
        self._closing = self._shutdown_started = True
        try:
            # Every run on the runners and in their flow scopes, even those submitted meanwhile.
            leftover = await drain_async(lambda: _unfinished(runners), self.grace_seconds)
            if leftover:
                await self._cancel_leftover(runners, leftover)
        finally:
            self._uninstall()
            if _pending(runners):  # e.g. the lifespan was cancelled while it waited
                self._cancel_remaining(runners)
            threads = [
                t for r in runners if isinstance(r, ThreadPoolTaskRunner) for t in r.worker_threads
            ]
            try:
                for r in runners:  # joins idle workers; abandoned ones are not joined
                    r.stop_unscoped()
                await _wait_threads_exit(threads, CLEANUP_SECONDS)
            finally:
                self._runner, self._runners = None, {}
                self._closing = False

    def _uninstall(self) -> None:
        runner = self._runner
        if runner is not None and runner.started:
            install_default_runner(self._previous)
            self._previous = None
            remove_named_runners(self._runners)
            for r in self._all():
                r.refuse_submissions()  # from now on, late submissions end CANCELLED

    def _reason(self) -> str:
        return (
            f"cancelled: the app shut down and its grace period of {self.grace_seconds:g} s ran out"
        )

    async def _cancel_leftover(self, runners: list[TaskRunner], leftover: int) -> None:
        logger.warning(
            "asyncflow: %d run(s) still in flight after the %g s grace period; cancelling them",
            leftover,
            self.grace_seconds,
        )
        self._uninstall()
        loop = asyncio.get_running_loop()
        for owner in _owners(runners):
            owner.cancel_all()
        # Async runs: cancel, then give their cleanup (finally blocks) a moment.
        async_runs = [run for run in _pending(runners) if run.task is not None]
        stop_runs(async_runs, CancelReason.SHUTDOWN, self._reason())
        if async_runs:
            await wait([run.future for run in async_runs], timeout=CLEANUP_SECONDS)
            here = [r.task for r in async_runs if r.loop is loop and r.task is not None]
            if here:
                await asyncio.wait(here, timeout=CLEANUP_SECONDS)
        self._cancel_remaining(runners)
        # Let the flows that owned these runs exit (and their requests answer).
        await _wait_scopes_exit(runners, CLEANUP_SECONDS)

    def _cancel_remaining(self, runners: list[TaskRunner]) -> None:
        """End every run still in flight CANCELLED, at once (threads are abandoned)."""
        for owner in _owners(runners):  # check_cancelled() raises in abandoned threads
            owner.abandon(self._reason(), CancelReason.SHUTDOWN)


def _start(
    template: TaskRunner, loop: asyncio.AbstractEventLoop, threads: str, started: list[TaskRunner]
) -> TaskRunner:
    runner = template.duplicate()
    if isinstance(runner, ThreadPoolTaskRunner):
        runner.thread_name_prefix = threads
    runner.start_unscoped(loop)  # async runs submitted outside flows go to the server's loop
    started.append(runner)
    return runner


async def _wait_threads_exit(threads: list[threading.Thread], timeout: float) -> None:
    """Give worker threads that ran cancelled runs a moment to notice and exit (a
    task calling `check_cancelled()` does); name the ones that do not."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while alive := [t for t in threads if t.is_alive()]:
        if loop.time() >= deadline:
            logger.warning(
                "asyncflow: worker thread(s) %s still run abandoned tasks (a thread cannot "
                "be killed; call asyncflow.check_cancelled() in long sync tasks)",
                ", ".join(sorted(t.name for t in alive)),
            )
            return
        await asyncio.sleep(0.01)  # polling thread exit: threads have no awaitable join


def _owners(runners: list[TaskRunner]) -> list[TaskRunner]:
    return [*runners, *scopes.on(runners)]


def _pending(runners: list[TaskRunner]) -> list[Run]:
    return [run for owner in _owners(runners) for run in owner.pending_runs()]


def _unfinished(runners: list[TaskRunner]) -> list[TaskFuture[object]]:
    return [run.future for run in _pending(runners)]


async def _wait_scopes_exit(runners: list[TaskRunner], timeout: float) -> None:
    """Wait (bounded) until no flow scope runs on `runners` any more."""
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def wake() -> None:
        loop.call_soon_threadsafe(changed.set)

    scopes.subscribe(wake)
    try:
        deadline = loop.time() + timeout
        while scopes.on(runners):
            remaining = deadline - loop.time()
            if remaining <= 0:
                logger.warning("asyncflow: flow scopes still open after shutdown cleanup")
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
            changed.clear()
    finally:
        scopes.unsubscribe(wake)


def engine(
    *,
    max_workers: int | None = None,
    grace_seconds: float = 30.0,
    task_runner: TaskRunner | None = None,
    runners: Mapping[str, TaskRunner] | None = None,
) -> Engine:
    """An `Engine` for an app's lifespan: shared runners, graceful shutdown.

    `max_workers`: threads of the shared default `ThreadPoolTaskRunner` (default as
    `ThreadPoolTaskRunner()`); or give a `task_runner` template instead. `runners`:
    more shared runners by name, for flows with `task_runner=SharedTaskRunner(name)`
    (e.g. `{"cpu": ProcessPoolTaskRunner()}`: one process pool for every request). On
    shutdown, runs still in flight get `grace_seconds` to finish, then are cancelled.

        app = Starlette(routes=..., lifespan=asyncflow.web.engine(grace_seconds=10))

        @contextlib.asynccontextmanager          # or, composed with your own resources
        async def lifespan(app):
            async with asyncflow.web.engine(max_workers=16), make_db_pool() as db:
                yield {"db": db}
    """
    return Engine(
        max_workers=max_workers,
        grace_seconds=grace_seconds,
        task_runner=task_runner,
        runners=runners,
    )
