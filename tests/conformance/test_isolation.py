"""What a run that ends abnormally costs, on every runner: `sys.exit()` in a task, a
task that kills its process (`os._exit`), with and without retries, and a flow body
that raises while its runs still run (a regression there is a hang).

Each case runs in a fresh process (`_probe.py`): on a runner whose runs share the
test's process, `os._exit` ends that process (the documented difference: only the
process runner isolates a crash), and a `SystemExit` can stop an in-process Dask worker
for every later test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .registry import SLOTS, Capabilities, RunnerKind, expect_defect

pytestmark = pytest.mark.timeout(90)  # above the probe's own bounds (3 x WAIT + start-up)
TESTS = Path(__file__).resolve().parent.parent


def probe(kind: RunnerKind, scenario: str, scratch: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])}
    return subprocess.run(
        [sys.executable, "-m", "conformance._probe", kind.name, scenario, str(scratch)],
        cwd=TESTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=75,
        check=False,
    )


def reported(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The scenario's outcome, and `runner_exited` (the runner's exit returned)."""
    assert done.returncode == 0, done.stderr
    *lines, last = done.stdout.splitlines()
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    return {**result, **json.loads(last)}


def test_sys_exit_in_a_task_fails_that_task(
    runner_kind: RunnerKind, caps: Capabilities, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    expect_defect(request, caps, "sys_exit")
    result = reported(probe(runner_kind, "sys_exit", tmp_path))
    assert (result["type"], result["error_type"], result["exit_code"]) == (
        "FAILED",
        "TaskExited",
        4,
    )
    assert result["after"] == "after"  # the runner goes on
    assert result["runner_exited"]


def test_a_run_that_kills_its_process(
    runner_kind: RunnerKind, caps: Capabilities, tmp_path: Path
) -> None:
    done = probe(runner_kind, "crash", tmp_path)
    if caps.in_process:  # documented: the run's process is the caller's, and it dies
        assert done.returncode == 3, done.stderr
        assert done.stdout == ""
        return
    result = reported(done)
    if caps.redelivers_crashes:  # at-least-once: another worker took the run over
        assert (result["type"], result["value"]) == ("COMPLETED", 2)
        assert result["after"] == "after"
        assert result["runner_exited"]
        return
    assert result["type"] == "CRASHED"
    assert result["error_type"] == "TaskCrashed"
    assert "'crash_until'" in result["error"]
    assert result["after"] == "after"  # the pool replaced the worker
    assert result["runner_exited"]


def test_a_crashed_run_is_retried(
    runner_kind: RunnerKind, caps: Capabilities, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    done = probe(runner_kind, "crash_retried", tmp_path)
    if caps.in_process:
        assert done.returncode == 3, done.stderr
        return
    expect_defect(request, caps, "crash_retry")
    result = reported(done)
    # Redelivered: the second delivery's first attempt succeeds; else a retry did.
    attempts = 1 if caps.redelivers_crashes else 2
    assert (result["type"], result["value"], result["attempts"]) == ("COMPLETED", 2, attempts)


def test_a_failing_flow_body_stops_its_runs_and_propagates(
    runner_kind: RunnerKind, caps: Capabilities, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    result = reported(probe(runner_kind, "failing_flow_body", tmp_path))
    assert result["runner_exited"], "the flow or its runner hung"
    assert result["error"] == "the body fails"
    assert result["all_done"]  # the flow did not return with runs pending
    if caps.workers_take_queued_runs:  # documented (workers.md): taken ones complete
        assert set(result["queued"]) <= {"Cancelled", "Completed"}, result["queued"]
    else:
        assert result["queued"] == ["Cancelled"]
    # Documented: a running thread run cannot be stopped (the flow waits for it); a
    # process run's worker is killed; an abandoned (Dask) run ends Cancelled unless its
    # function returned before the cancellation reached it.
    expected = {
        "refused": {"Completed"},
        "killed": {"Cancelled"},
        "abandoned": {"Cancelled", "Completed"},
    }[caps.cancel_running_sync]
    assert len(result["running"]) == SLOTS
    assert set(result["running"]) <= expected
