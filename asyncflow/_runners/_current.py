"""Which runner is current: the one home of every "which runner?" registry.

`.submit()` goes, innermost first, to the runner of the task run that is submitting
(nested submission), the runner entered in this context (a flow's, or `with runner:`),
the runner an application installed as the default (a web engine's), else the
process-wide default runner. The web engines' named runners
(`SharedTaskRunner("cpu")`) are registered here too.

The process-wide default is made by a factory that `_thread` registers
(`ThreadPoolTaskRunner`), so this module imports no runner and no runner module has
to import `_thread`. It is started on first use, as an unscoped runner
(`TaskRunner.start_unscoped`), and at interpreter exit drained and stopped. A forked
child starts with none of these: its parent's runners have no threads there.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .._core import (
    claim_sigterm,
    current_run,
    drain,
    release_sigterm,
    stop_engine_loop,
    terminating,
)
from ..settings import get_settings

if TYPE_CHECKING:  # annotations only: the runner modules import this one
    from ._base import TaskRunner

__all__ = (
    "add_named_runners",
    "current_runner",
    "default_runner",
    "entered",
    "entered_runner",
    "install_default_runner",
    "installed_runner",
    "named_runner",
    "remove_named_runners",
    "set_default_factory",
    "sigterm_enabled",
)

# The runner entered with `with runner:` / `async with runner:` in this context.
entered: contextvars.ContextVar[TaskRunner | None] = contextvars.ContextVar(
    "asyncflow_runner", default=None
)

_factory: Callable[[], TaskRunner] | None = None
_default: TaskRunner | None = None
_default_claimed = False  # did the default runner claim SIGTERM (see _core/_signals)?
_installed: TaskRunner | None = None
_named: dict[str, TaskRunner] = {}
_lock = threading.Lock()  # guards _default and _named


def entered_runner() -> TaskRunner | None:
    return entered.get()


def current_runner() -> TaskRunner:
    """The runner a `.submit()` made here goes to."""
    run = current_run.get()
    if run is not None:
        owner: TaskRunner = run.owner
        return owner
    return entered.get() or _installed or _default or _create_default()


def sigterm_enabled() -> bool:
    return get_settings().handle_sigterm


# ---- the process-wide default runner ---------------------------------------------------


def set_default_factory(factory: Callable[[], TaskRunner]) -> None:
    """How to make the process-wide default runner (registered by `_thread`)."""
    global _factory
    _factory = factory


def default_runner() -> TaskRunner:
    """The runner used by `.submit()` outside any flow or `with runner:` block."""
    return _installed or _default or _create_default()


def _create_default() -> TaskRunner:
    global _default, _default_claimed
    with _lock:
        if _default is None:
            assert _factory is not None, "asyncflow._runners._thread registers the factory"
            runner = _factory()
            runner.start_unscoped()
            # Process-wide, so its SIGTERM claim (if any) lasts until the interpreter exits.
            _default_claimed = claim_sigterm(sigterm_enabled)
            _default = runner
        return _default


def _shutdown_default() -> None:
    """At exit: wait for the default runner's runs (abandon them on Ctrl-C/SIGTERM)."""
    global _default
    with _lock:
        runner, _default = _default, None
    try:
        if runner is not None:
            runner.refuse_submissions()
            if _interrupted():
                runner.abandon("interrupted: the program is exiting")
            drain(runner.unfinished)
            runner.stop_unscoped()
            if _default_claimed:
                release_sigterm()
    finally:
        stop_engine_loop()


def _interrupted() -> bool:
    """Is the program exiting because of SIGTERM, or of a Ctrl-C nobody caught? Then
    the default runner's runs are abandoned (Cancelled) rather than waited for."""
    return terminating() or isinstance(getattr(sys, "last_value", None), KeyboardInterrupt)


# ---- the runners an application installed (a web engine's) ----------------------------


def install_default_runner(runner: TaskRunner | None) -> TaskRunner | None:
    """Make a started `runner` the default for `.submit()` outside flows; None restores
    the built-in default. Returns the previously installed runner."""
    global _installed
    if runner is not None and not runner.started:
        raise RuntimeError(f"{runner.name} must be started before it is installed as default")
    previous, _installed = _installed, runner
    return previous


def installed_runner() -> TaskRunner | None:
    """The runner an application installed as the default, if any."""
    return _installed


def add_named_runners(runners: Mapping[str, TaskRunner]) -> None:
    """Register a running engine's named runners (RuntimeError if a name is taken)."""
    with _lock:
        taken = sorted(set(runners) & set(_named))
        if taken:
            raise RuntimeError(f"another running asyncflow engine has runner(s) {taken}")
        _named.update(runners)


def remove_named_runners(runners: Mapping[str, TaskRunner]) -> None:
    with _lock:
        for name, runner in runners.items():
            if _named.get(name) is runner:
                del _named[name]


def named_runner(name: str) -> TaskRunner | None:
    with _lock:
        return _named.get(name)


def _after_fork_in_child() -> None:
    global _default, _installed, _lock
    _default = _installed = None
    _named.clear()
    _lock = threading.Lock()


# Runs before non-daemon threads are joined at exit, like concurrent.futures' pools
# (the stdlib's private hook: `atexit` would run after the joins, too late).
threading._register_atexit(_shutdown_default)  # type: ignore[attr-defined]  # noqa: SLF001
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
