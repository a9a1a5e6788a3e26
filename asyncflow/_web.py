"""Embedding asyncflow in a web server: one shared engine per app, graceful shutdown.

Framework-free: this module speaks plain asyncio and ASGI dicts, so it works for any
ASGI app (Starlette, FastAPI, Quart, Litestar, a bare ASGI callable).

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
* `ShutdownErrorMiddleware` wraps any ASGI app so that a request cut short by the
  server's shutdown gets a 503 with a plain-text reason instead of a bare 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from types import TracebackType
from typing import Any

from ._core import _engine, _validate
from ._core._attempt import CancelReason
from ._core._exceptions import TaskCancelled
from ._core._waiting import wait
from ._runners._base import TaskRunner
from ._runners._shared import SharedTaskRunner, _named, _named_lock, _scopes
from ._runners._thread import ThreadPoolTaskRunner, install_default_runner

__all__ = ("Engine", "SharedTaskRunner", "ShutdownErrorMiddleware", "engine")

logger = logging.getLogger("asyncflow")

THREAD_NAME = "asyncflow-web"
# After the grace period: how long cancelled async runs and the flow scopes that own
# them get to finish their cleanup (and send their error responses) before the pool
# stops. Everything they wait for is final by then, so this is rarely reached.
CLEANUP_SECONDS = 2.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# ---- the engine ------------------------------------------------------------------------


def _check_grace(grace_seconds: object) -> float:
    """A timeout (`_validate.timeout`), kept as a float: inf (or None) waits for every run."""
    seconds = _validate.timeout("grace_seconds", grace_seconds)
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
        return self._runner is not None

    @property
    def closing(self) -> bool:
        """True from the moment shutdown begins until the engine has stopped."""
        return self._closing

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
        global _shutdown_seen
        if self._runner is not None:
            raise RuntimeError("this asyncflow engine is already running")
        with _named_lock:
            taken = sorted(set(self._templates) & set(_named))
            if taken:
                raise RuntimeError(f"another running asyncflow engine has runner(s) {taken}")
        loop = asyncio.get_running_loop()
        started: list[TaskRunner] = []
        try:
            runner = _start(self._default_template, loop, THREAD_NAME)
            started.append(runner)
            named = {}
            for name, template in self._templates.items():
                named[name] = _start(template, loop, f"{THREAD_NAME}-{name}")
                started.append(named[name])
        except BaseException:
            for r in started:
                r._started = False
                r._stop_resources()
            raise
        with _named_lock:
            _named.update(named)
        self._previous = install_default_runner(runner)
        self._runner, self._runners = runner, named
        self._closing = False
        _shutdown_seen = False
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _shutdown_seen
        runners = self._all()
        if not runners:
            raise RuntimeError("this asyncflow engine is not running")
        self._closing = True
        _shutdown_seen = True
        try:
            leftover = await _wait_until(runners, self.grace_seconds)
            if leftover:
                await self._cancel_leftover(runners, leftover)
        finally:
            self._uninstall()
            if _pending(runners):  # e.g. the lifespan was cancelled while it waited
                self._cancel_remaining(runners)
            threads = _worker_threads(runners)
            try:
                for r in runners:  # joins idle workers; abandoned ones are not joined
                    r._stop_resources()
                await _wait_threads_exit(threads, CLEANUP_SECONDS)
            finally:
                for r in runners:
                    r._loop = None
                self._runner, self._runners = None, {}
                self._closing = False

    def _uninstall(self) -> None:
        runner = self._runner
        if runner is not None and runner._started:
            install_default_runner(self._previous)
            self._previous = None
            with _named_lock:
                for name, named in self._runners.items():
                    if _named.get(name) is named:
                        del _named[name]
            for r in self._all():
                r._started = False  # from now on, late submissions end CANCELLED

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
        _engine.stop_runs(async_runs, CancelReason.SHUTDOWN, self._reason())
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
        reason = self._reason()
        for r in runners:
            r._abandoned = True  # do not join threads still running abandoned runs
        for owner in _owners(runners):
            # Thread runs are abandoned (check_cancelled() raises in them from now on);
            # process runs have their workers killed; the rest end Cancelled at once.
            _engine.stop_runs(owner._pending_runs(), CancelReason.SHUTDOWN, reason)


def _start(template: TaskRunner, loop: asyncio.AbstractEventLoop, threads: str) -> TaskRunner:
    runner = template.duplicate()
    if isinstance(runner, ThreadPoolTaskRunner):
        runner._thread_name = threads
    # Lives as long as the app: a list of every failed run would grow without bound.
    runner._track_failures = False
    # Started by hand rather than `async with runner`: request handlers run in other
    # tasks (other contexts), so they reach it as the installed default or by name.
    runner._loop = loop  # async runs submitted outside flows go to the server's loop
    runner._start_resources()
    runner._started = True
    return runner


def _worker_threads(runners: list[TaskRunner]) -> list[threading.Thread]:
    threads: list[threading.Thread] = []
    for r in runners:
        pool = getattr(r, "_pool", None)
        threads.extend(getattr(pool, "_threads", ()))
    return threads


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
    return [*runners, *_scopes.on(runners)]


def _pending(runners: list[TaskRunner]) -> list[_engine.Run]:
    runs: list[_engine.Run] = []
    for owner in _owners(runners):
        runs.extend(owner._pending_runs())
    return runs


async def _wait_until(runners: list[TaskRunner], grace: float) -> int:
    """Wait up to `grace` seconds for every run on `runners` (and their flow scopes),
    even those submitted meanwhile; return how many are still unfinished."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while runs := _pending(runners):
        remaining = deadline - loop.time()
        if remaining <= 0:
            return len(runs)
        await wait([run.future for run in runs], timeout=remaining)
    return 0


async def _wait_scopes_exit(runners: list[TaskRunner], timeout: float) -> None:
    """Wait (bounded) until no flow scope runs on `runners` any more."""
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def wake() -> None:
        loop.call_soon_threadsafe(changed.set)

    _scopes.subscribe(wake)
    try:
        deadline = loop.time() + timeout
        while _scopes.on(runners):
            remaining = deadline - loop.time()
            if remaining <= 0:
                logger.warning("asyncflow: flow scopes still open after shutdown cleanup")
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
            changed.clear()
    finally:
        _scopes.unsubscribe(wake)


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


# ---- ASGI: a clear error for requests cut short by shutdown ----------------------------

# Set when an engine starts shutting down, cleared when one starts: a handler's
# TaskCancelled in between is the shutdown's doing.
_shutdown_seen = False

_SHUTDOWN_BODY = (
    b"503 Service Unavailable: the server shut down before this request finished "
    b"(its work was cancelled after the grace period); retry it\n"
)


class ShutdownErrorMiddleware:
    """ASGI middleware: a request cancelled by the server's shutdown gets a 503.

    Servers cancel handlers still running when their graceful-shutdown timeout runs out
    (uvicorn's `timeout_graceful_shutdown`); a handler also fails with
    `exceptions.TaskCancelled` when an `Engine` cancels its work after the grace period.
    Without this wrapper clients see a bare 500 or a dropped connection; with it, if no
    response has started, they get `503` with a `Retry-After` header and a plain-text
    reason. Other errors pass through untouched. Works for any ASGI app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except asyncio.CancelledError:
            if not started:
                await _send_503(send)
            raise
        except TaskCancelled:
            if started or not _shutdown_seen:
                raise
            await _send_503(send)


async def _send_503(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(_SHUTDOWN_BODY)).encode()),
                (b"retry-after", b"1"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _SHUTDOWN_BODY})
