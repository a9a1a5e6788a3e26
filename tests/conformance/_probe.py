"""Run one scenario on one registered runner in a fresh process and print its outcome
as JSON: for cases that may end the process they run in (a task that calls `os._exit`
on a runner whose runs share the process) or break the runner's resources for later
tests (a `SystemExit` that stops an in-process Dask worker).

    python -m conformance._probe <runner> <scenario> <scratch dir>    (cwd: tests/)
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from helpers import SHORT_WAIT, Tally, ident

from asyncflow import TaskFuture

from . import tasks
from .registry import RUNNERS, no_shared_resources


def outcome(fut: TaskFuture[Any]) -> dict[str, Any]:
    fut.wait(timeout=SHORT_WAIT)  # a known defect may leave it unfinished: report that
    exc = fut.exception(timeout=0) if fut.done() else None
    return {
        "type": fut.state.type.name,
        "name": fut.state.name,
        "attempts": getattr(fut.state, "attempts", None),
        "error_type": type(exc).__name__ if exc is not None else None,
        "error": str(exc) if exc is not None else None,
        "exit_code": exc.code if isinstance(exc, SystemExit) else None,
        "value": fut.result(timeout=0) if fut.state.is_completed() else None,
    }


def sys_exit(scratch: str) -> dict[str, Any]:
    return outcome(tasks.exit_with.submit(4))


def crash(scratch: str) -> dict[str, Any]:
    return outcome(tasks.crash_until.submit(Tally(f"{scratch}/crash"), 2))


def crash_retried(scratch: str) -> dict[str, Any]:
    retried = tasks.crash_until.with_options(retries=1)
    return outcome(retried.submit(Tally(f"{scratch}/crash"), 2))


SCENARIOS: dict[str, Callable[[str], dict[str, Any]]] = {
    "sys_exit": sys_exit,
    "crash": crash,
    "crash_retried": crash_retried,
}


def scenario_then_exit(kind: str, scenario: str, scratch: str, results: list[Any]) -> None:
    with RUNNERS[kind].make(no_shared_resources):
        result = SCENARIOS[scenario](scratch)
        after = ident.submit("after")  # does the runner go on?
        after.wait(SHORT_WAIT)
        result["after"] = after.result(timeout=0) if after.state.is_completed() else None
        print(json.dumps(result), flush=True)
    results.append("runner exited")


def run_scenario(kind: str, scenario: str, scratch: str) -> None:
    """Print the scenario's outcome (and whether the runner still runs a task), then
    whether the runner exits within WAIT: a runner left waiting for a run that never
    ends would hang the probe, so the run is on a thread and this process ends anyway."""
    exited: list[str] = []
    body = threading.Thread(target=scenario_then_exit, args=(kind, scenario, scratch, exited))
    body.daemon = True
    body.start()
    body.join(3 * SHORT_WAIT)
    print(json.dumps({"runner_exited": bool(exited)}), flush=True)
    os._exit(0)  # without waiting for a runner that did not exit (reported above)


if __name__ == "__main__":
    run_scenario(*sys.argv[1:])
