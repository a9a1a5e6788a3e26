"""Run one scenario on one registered runner in a fresh process and print its outcome
as JSON: for cases that may end the process they run in (a task that calls `os._exit`
on a runner whose runs share the process), break the runner's resources for later
tests (a `SystemExit` that stops an in-process Dask worker), or hang (a flow that
waits for runs it should have stopped): the probe ends after a bounded wait anyway.

    python -m conformance._probe <runner> <scenario> <scratch dir>    (cwd: tests/)
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from helpers import WAIT, FileGate, Tally, ident

from asyncflow import TaskFuture, flow

from . import tasks
from .registry import QUEUED, RUNNERS, SLOTS, no_shared_resources


def outcome(fut: TaskFuture[Any]) -> dict[str, Any]:
    fut.wait(timeout=WAIT)  # a known defect may leave it unfinished: report that
    exc = fut.exception(timeout=0) if fut.done() else None
    return {
        "type": fut.state.type.name,
        "name": fut.state.name,
        "attempts": getattr(fut.state, "attempts", None),
        "error_type": type(exc).__name__ if exc is not None else None,
        "error": str(exc) if exc is not None else None,
        "exit_code": getattr(exc, "code", None),  # TaskExited.code, the code passed
        "value": fut.result(timeout=0) if fut.state.is_completed() else None,
    }


def sys_exit(scratch: str) -> dict[str, Any]:
    return outcome(tasks.exit_with.submit(4))


def crash(scratch: str) -> dict[str, Any]:
    return outcome(tasks.crash_until.submit(Tally(f"{scratch}/crash"), 2))


def crash_retried(scratch: str) -> dict[str, Any]:
    retried = tasks.crash_until.with_options(retries=1)
    return outcome(retried.submit(Tally(f"{scratch}/crash"), 2))


def failing_flow_body(scratch: str) -> dict[str, Any]:
    """A sync flow body raises while SLOTS runs run and QUEUED wait: what ends how."""
    runner = RUNNERS[KIND[0]].make(no_shared_resources)
    release = FileGate(f"{scratch}/release")
    futures: list[TaskFuture[Any]] = []
    # Where running sync runs cannot be stopped (a thread; a Dask worker thread, which
    # a temporary cluster's close waits for), the body lets them end before raising.
    unstoppable = RUNNERS[KIND[0]].caps.cancel_running_sync != "killed"

    @flow(task_runner=runner)
    def failing() -> None:
        started = [FileGate(f"{scratch}/started-{i}") for i in range(SLOTS)]
        futures.extend(tasks.blocker.submit(gate, release) for gate in started)
        for gate in started:
            gate.wait()
        futures.extend(ident.submit(i) for i in range(QUEUED))
        if unstoppable:
            release.open()
        raise RuntimeError("the body fails")

    try:
        failing()
    except RuntimeError as exc:
        error = str(exc)
    release.open()
    return {
        "error": error,
        "all_done": all(f.done() for f in futures),
        "running": [f.state.name for f in futures[:SLOTS]],
        "queued": sorted({f.state.name for f in futures[SLOTS:]}),
    }


SCENARIOS: dict[str, Callable[[str], dict[str, Any]]] = {
    "sys_exit": sys_exit,
    "crash": crash,
    "crash_retried": crash_retried,
    "failing_flow_body": failing_flow_body,
}
KIND: list[str] = []  # the runner kind this probe runs


def scenario_then_exit(kind: str, scenario: str, scratch: str, results: list[Any]) -> None:
    KIND.append(kind)
    with RUNNERS[kind].make(no_shared_resources):
        result = SCENARIOS[scenario](scratch)
        after = ident.submit("after")  # does the runner go on?
        after.wait(WAIT)
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
    body.join(3 * WAIT)  # both waits above, and the runner's exit
    print(json.dumps({"runner_exited": bool(exited)}), flush=True)
    os._exit(0)  # without waiting for a runner that did not exit (reported above)


if __name__ == "__main__":
    run_scenario(*sys.argv[1:])
