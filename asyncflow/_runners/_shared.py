"""`SharedTaskRunner`: a flow's own scope over a shared, already started runner.

An application (e.g. a web server, through `asyncflow.web.engine`) starts runners once
and installs one as the default; each flow call still gets its own structured scope
(it waits for, cancels and reports only its own runs) while the work executes on the
shared pools. A `@flow` without a `task_runner` uses this scope automatically while an
application has installed a default runner.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from .._core import Run, cancelled
from ._base import TaskRunner
from ._current import default_runner, named_runner

__all__ = ("SharedTaskRunner", "scopes")


# ---- flow scopes over the shared runner ------------------------------------------------


class _Scopes:
    """The flow scopes currently running on some shared runner (thread-safe)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Empty, with a fresh lock (also in a forked child: no scope is open there)."""
        self._lock = threading.Lock()
        self._live: set[SharedTaskRunner] = set()
        self._on_exit: list[Callable[[], object]] = []

    def add(self, scope: SharedTaskRunner) -> None:
        with self._lock:
            self._live.add(scope)

    def discard(self, scope: SharedTaskRunner) -> None:
        with self._lock:
            self._live.discard(scope)
            wakers = list(self._on_exit)
        for wake in wakers:
            wake()

    def on(self, shared: list[TaskRunner]) -> list[SharedTaskRunner]:
        with self._lock:
            return [s for s in self._live if any(s.shared is r for r in shared)]

    def subscribe(self, wake: Callable[[], object]) -> None:
        with self._lock:
            self._on_exit.append(wake)

    def unsubscribe(self, wake: Callable[[], object]) -> None:
        with self._lock:
            self._on_exit.remove(wake)


scopes = _Scopes()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=scopes.reset)


class SharedTaskRunner(TaskRunner):
    """A flow's task runner that executes on a shared, already started runner.

    Use it as a template, `@flow(task_runner=SharedTaskRunner())`: each flow call gets a
    fresh scope (`duplicate()`) that tracks only its own runs (the flow waits for them,
    cancels them if its body raises or it is cancelled, and reports failures nobody
    looked at), while the runs execute on the shared runner:

    * `SharedTaskRunner()`: the default runner, i.e. the one a running `Engine`
      installed, or else the process-wide default (so it works in scripts too);
    * `SharedTaskRunner("cpu")`: the runner a running engine was given as
      `runners={"cpu": ProcessPoolTaskRunner()}` (RuntimeError if none).

    Async runs execute on the loop the flow runs on (an async flow: the request's loop),
    as with `ThreadPoolTaskRunner`.
    """

    def __init__(self, name: str | None = None) -> None:
        super().__init__()
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"SharedTaskRunner name must be a non-empty string, got {name!r}")
        self.runner_name = name
        self._shared: TaskRunner | None = None

    def duplicate(self) -> SharedTaskRunner:
        return type(self)(self.runner_name)

    def __repr__(self) -> str:
        return f"SharedTaskRunner({'' if self.runner_name is None else repr(self.runner_name)})"

    @property
    def shared(self) -> TaskRunner | None:
        """The runner this scope executes on (None when not started)."""
        return self._shared

    def _start_resources(self) -> None:
        if self.runner_name is None:
            shared = default_runner()
            if isinstance(shared, SharedTaskRunner):
                raise TypeError("a SharedTaskRunner cannot be installed as the default runner")
        else:
            found = named_runner(self.runner_name)
            if found is None:
                raise RuntimeError(
                    f"no running asyncflow engine has a runner named {self.runner_name!r}: "
                    f"pass runners={{{self.runner_name!r}: ...}} to asyncflow.web.engine() "
                    "and call this flow while the engine runs"
                )
            shared = found
        self._shared = shared
        scopes.add(self)

    def _stop_resources(self) -> None:
        scopes.discard(self)
        self._shared = None

    def start_run(self, run: Run) -> None:
        shared = self._shared
        if shared is None or not shared.started:
            cancelled(run, "cancelled: the shared runner shut down before it started")
            return
        shared.start_run(run)

    def withdraw(self, run: Run) -> None:
        shared = self._shared
        if shared is not None:
            shared.withdraw(run)

    def can_stop(self, run: Run) -> bool:
        shared = self._shared
        return shared.can_stop(run) if shared is not None else False

    def stop_running(self, run: Run) -> None:
        shared = self._shared
        if shared is not None:
            shared.stop_running(run)

    def release_run(self, run: Run) -> None:
        super().release_run(run)
        shared = self._shared
        if shared is not None:
            shared.release_run(run)  # lets a runner drop per-run state it keeps itself
