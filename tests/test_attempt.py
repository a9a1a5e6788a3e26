"""The sans-I/O attempt machine: unit rules, then random event scripts against a plain
reference written as the rules read in `_core/_attempt.py`'s docstring.

No event loop, no threads, no clock: the machine is pure bookkeeping.
"""

from __future__ import annotations

import ast
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncflow._core import _attempt
from asyncflow._core._attempt import Attempts, CancelReason, Finish, Phase, Retry, Stop
from asyncflow._core._exceptions import TaskCancelled, TaskCrashed, TaskExited, TaskTimeout
from asyncflow._core._policy import RetryPolicy
from asyncflow._core._states import State, StateType


class Boom(Exception):
    pass


class Other(Exception):
    pass


def machine(
    retries: int = 0,
    delay: float | list[float] = 0.0,
    condition: type[BaseException] | None = None,
    timeout: float | None = None,
    jitter: float | None = None,
) -> Attempts:
    policy = None
    if retries:
        cond = None if condition is None else (lambda exc, t=condition: isinstance(exc, t))
        policy = RetryPolicy(retries, delay, jitter, cond)
    return Attempts("t", policy, timeout)


def fail(m: Attempts, error: BaseException) -> Finish | Retry | None:
    """Report a failure as the engine does: judge (outside its lock), then raised."""
    return m.raised(*m.judge(error))


def crash(m: Attempts, error: TaskCrashed) -> Finish | Retry | None:
    return m.crashed(*m.judge(error))


def finish(ins: object) -> Finish:
    assert isinstance(ins, Finish), ins
    return ins


def retry(ins: object) -> Retry:
    assert isinstance(ins, Retry), ins
    return ins


# ---- the unit rules ------------------------------------------------------------------


def test_a_returned_attempt_completes_the_run() -> None:
    m = machine()
    assert m.begin() == 1
    f = finish(m.returned(42))
    assert (f.state.type, f.state.attempts, f.value, f.error) == (StateType.COMPLETED, 1, 42, None)
    assert m.phase is Phase.FINAL
    assert m.begin() == 0  # a final run never starts again


def test_the_hot_path_gets_the_completed_state_itself() -> None:
    m = machine()
    m.begin()
    state = m.returned_state()
    assert isinstance(state, State)
    assert (state.type, state.attempts, m.phase) == (StateType.COMPLETED, 1, Phase.FINAL)
    assert m.returned_state() is None  # final: a second value is dropped


def test_the_hot_path_ends_a_stopped_run_as_the_stop_says() -> None:
    m = machine()
    m.begin()
    assert isinstance(m.cancel_requested(CancelReason.CANCELLED, True), Stop)
    f = finish(m.returned_state())
    assert (f.state.type, f.value) == (StateType.CANCELLED, None)
    assert isinstance(f.error, TaskCancelled)


def test_a_failure_without_retries_fails_with_the_tasks_own_error() -> None:
    m = machine()
    m.begin()
    err = Boom("x")
    f = finish(fail(m, err))
    assert (f.state.type, f.state.name, f.state.attempts) == (StateType.FAILED, "Failed", 1)
    assert f.error is err
    assert f.state.message == "Boom: x"


def test_retries_count_attempts_and_use_the_delay_of_each() -> None:
    m = machine(retries=2, delay=[1.0, 5.0])
    m.begin()
    r1 = retry(fail(m, Boom()))
    assert (r1.attempt, m.retry_delay(), r1.state.name, r1.state.type) == (
        2,
        1.0,
        "Retrying",
        StateType.RUNNING,
    )
    assert m.phase is Phase.RETRY_WAIT
    assert m.begin() == 2
    r2 = retry(fail(m, Boom()))
    assert (r2.attempt, m.retry_delay()) == (3, 5.0)
    assert m.begin() == 3
    f = finish(fail(m, Boom()))
    assert (f.state.type, f.state.attempts) == (StateType.FAILED, 3)


def test_jitter_draws_from_the_injected_generator() -> None:
    m = machine(retries=1, delay=10.0, jitter=0.5)
    m.begin()
    retry(fail(m, Boom()))
    expected = 10.0 + random.Random(7).uniform(-5.0, 5.0)
    assert m.retry_delay(random.Random(7)) == pytest.approx(expected)


def test_retry_condition_decides() -> None:
    m = machine(retries=3, condition=Boom)
    m.begin()
    retry(fail(m, Boom()))
    m.begin()
    f = finish(fail(m, Other("no")))
    assert (f.state.type, f.state.attempts) == (StateType.FAILED, 2)


def test_a_crash_is_retried_like_a_failure_and_ends_crashed() -> None:
    m = machine(retries=1)
    m.begin()
    retry(crash(m, TaskCrashed("worker died")))
    m.begin()
    died = TaskCrashed("worker died again")
    f = finish(crash(m, died))
    assert (f.state.type, f.state.attempts, f.error) == (StateType.CRASHED, 2, died)


def test_a_condition_refusing_task_crashed_keeps_crashes_final() -> None:
    m = machine(retries=3, condition=Boom)
    m.begin()
    f = finish(crash(m, TaskCrashed("died")))
    assert (f.state.type, f.state.attempts) == (StateType.CRASHED, 1)


def test_sys_exit_is_the_tasks_failure_not_an_exit() -> None:
    m = machine(retries=1)
    m.begin()
    r = retry(fail(m, SystemExit(3)))  # an Exception now: retried like any failure
    assert "TaskExited" in (r.state.message or "")
    m.begin()
    f = finish(fail(m, SystemExit(3)))
    assert f.state.type is StateType.FAILED
    assert isinstance(f.error, TaskExited)
    assert f.error.code == 3
    assert isinstance(f.error.__cause__, SystemExit)
    assert "sys.exit(3)" in str(f.error)
    assert "'t'" in str(f.error)


def test_other_base_exceptions_crash_and_are_not_retried() -> None:
    m = machine(retries=3)
    m.begin()
    err = KeyboardInterrupt()
    f = finish(fail(m, err))
    assert (f.state.type, f.state.attempts, f.error) == (StateType.CRASHED, 1, err)


def test_cancel_before_start_is_final_and_the_run_never_begins() -> None:
    m = machine()
    f = finish(m.cancel_requested(CancelReason.CANCELLED, stoppable=False))
    assert f.state.type is StateType.CANCELLED
    assert f.state.message == "cancelled before it started"
    assert isinstance(f.error, TaskCancelled)
    assert m.begin() == 0


def test_cancel_during_a_retry_delay_is_final_at_once() -> None:
    m = machine(retries=1, delay=30.0)
    m.begin()
    retry(fail(m, Boom()))
    f = finish(m.cancel_requested(CancelReason.CANCELLED, stoppable=False))
    assert (f.state.type, f.state.attempts) == (StateType.CANCELLED, 1)
    assert m.begin() == 0  # the driver's timer fires later: nothing starts


def test_plain_cancel_of_an_unstoppable_attempt_is_refused() -> None:
    m = machine()
    m.begin()
    assert m.cancel_requested(CancelReason.CANCELLED, stoppable=False) is None
    assert finish(m.returned(1)).state.type is StateType.COMPLETED


@pytest.mark.parametrize(
    "reason", [CancelReason.INTERRUPTED, CancelReason.SHUTDOWN, CancelReason.TIMED_OUT]
)
def test_abandoning_reasons_end_an_unstoppable_attempt_at_once(reason: CancelReason) -> None:
    m = machine(timeout=2.0)
    m.begin()
    f = finish(m.cancel_requested(reason, stoppable=False))
    expected = StateType.FAILED if reason is CancelReason.TIMED_OUT else StateType.CANCELLED
    assert f.state.type is expected
    assert m.returned(1) is None  # the abandoned attempt's late value is dropped
    assert fail(m, Boom()) is None


def test_stoppable_cancel_waits_for_the_outcome_and_ignores_a_late_value() -> None:
    m = machine()
    m.begin()
    assert isinstance(m.cancel_requested(CancelReason.CANCELLED, stoppable=True), Stop)
    assert m.cancel_requested(CancelReason.CANCELLED, stoppable=True) is None  # already under way
    f = finish(m.returned("late"))
    assert f.state.type is StateType.CANCELLED
    assert f.value is None


def test_deadline_of_a_stoppable_attempt_ends_timed_out_after_its_outcome() -> None:
    m = machine(retries=5, timeout=0.5)
    m.begin()
    assert isinstance(m.deadline(0.5, stoppable=True), Stop)
    f = finish(fail(m, Boom()))  # e.g. the CancelledError, or the killed worker's crash
    assert (f.state.type, f.state.name) == (StateType.FAILED, "TimedOut")
    assert isinstance(f.error, TaskTimeout)
    assert "0.5 s" in str(f.error)


def test_a_deadline_is_final_even_with_retries_left() -> None:
    m = machine(retries=5, delay=1.0, timeout=3.0)
    m.begin()
    retry(fail(m, Boom()))
    f = finish(m.deadline(3.0, stoppable=True))  # in the retry delay: nothing to stop
    assert (f.state.name, f.state.attempts) == ("TimedOut", 1)


def test_a_flow_deadline_names_its_own_seconds() -> None:
    m = machine(timeout=None)
    m.begin()
    f = finish(m.deadline(7.0, stoppable=False))
    assert "7.0 s" in str(f.error)


def test_events_after_final_are_ignored() -> None:
    m = machine()
    m.begin()
    finish(m.returned(1))
    assert m.cancel_requested(CancelReason.CANCELLED, stoppable=True) is None
    assert m.deadline(1.0, stoppable=True) is None
    assert crash(m, TaskCrashed("x")) is None


def test_the_machine_does_no_io() -> None:
    """No asyncio, threading, time or logging: the rules stay testable without a loop."""
    tree = ast.parse(Path(_attempt.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "enum", "typing", "random"}, imported


# ---- random scripts against a reference ------------------------------------------------

KINDS = ("return", "boom", "other", "exit", "base", "crash", "cancel", "deadline")


@dataclass
class Reference:
    """The rules, written as plainly as possible (no shared code with the machine)."""

    retries: int
    delays: list[float]
    retry_types: tuple[type[BaseException], ...]  # what the condition accepts

    phase: str = "pending"
    attempt: int = 0
    stop: str | None = None  # "cancelled" | "timed out" | ...
    final: tuple[str, str, int] | None = None  # (type name, state name, attempts)

    def begin(self) -> int:
        if self.final is not None or self.stop is not None:
            return 0
        self.phase = "running"
        self.attempt += 1
        return self.attempt

    def _end(self, type_name: str, name: str) -> None:
        self.final = (type_name, name, self.attempt)
        self.phase = "final"

    def _stopped(self) -> None:
        if self.stop == "timed out":
            self._end("FAILED", "TimedOut")
        else:
            self._end("CANCELLED", "Cancelled")

    def outcome(self, kind: str) -> float | None:
        """Returns the retry delay when another attempt is due."""
        if self.final is not None:
            return None
        if self.stop is not None:
            self._stopped()
            return None
        if kind == "return":
            self._end("COMPLETED", "Completed")
            return None
        if kind == "base":
            self._end("CRASHED", "Crashed")
            return None
        error: BaseException = {
            "boom": Boom(),
            "other": Other(),
            "exit": TaskExited("exit"),
            "crash": TaskCrashed("c"),
        }[kind]
        if self.attempt <= self.retries and isinstance(error, self.retry_types):
            self.phase = "retry"
            return self.delays[min(self.attempt, len(self.delays)) - 1]
        self._end(
            "CRASHED" if kind == "crash" else "FAILED", "Crashed" if kind == "crash" else "Failed"
        )
        return None

    def cancel(self, reason: str, stoppable: bool) -> str:
        if self.final is not None or self.stop is not None:
            return "none"
        if self.phase == "running" and reason != "interrupted":
            if stoppable:
                self.stop = reason
                return "stop"
            if reason == "cancelled":
                return "none"
        self.stop = reason
        self._stopped()
        return "finish"


def _error_for(kind: str) -> BaseException:
    return {
        "boom": Boom(),
        "other": Other(),
        "exit": SystemExit(2),
        "base": KeyboardInterrupt(),
    }[kind]


CONDITIONS: dict[str, tuple[type[BaseException], ...]] = {
    "any": (Exception,),
    "boom-only": (Boom,),
    "not-crashes": (Boom, Other, TaskExited),
}


@settings(max_examples=300, deadline=None)
@given(
    retries=st.integers(0, 3),
    delays=st.lists(st.sampled_from([0.0, 0.5, 2.0]), min_size=1, max_size=3),
    condition=st.sampled_from(sorted(CONDITIONS)),
    script=st.lists(
        st.tuples(
            st.sampled_from(KINDS),
            st.sampled_from([r.value for r in CancelReason]),
            st.booleans(),
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_random_scripts_match_the_reference(
    retries: int,
    delays: list[float],
    condition: str,
    script: list[tuple[str, str, bool]],
) -> None:
    accepted = CONDITIONS[condition]
    policy = None
    if retries:
        policy = RetryPolicy(retries, delays, None, lambda exc: isinstance(exc, accepted))
    m = Attempts("t", policy, 1.0)
    ref = Reference(retries, delays, accepted)
    reasons = {r.value: r for r in CancelReason}
    ended: Finish | None = None

    assert m.begin() == ref.begin()
    for kind, reason, stoppable in script:
        got: object
        if kind in ("cancel", "deadline"):
            if kind == "deadline":
                got, want = m.deadline(1.0, stoppable), ref.cancel("timed out", stoppable)
            else:
                got, want = (
                    m.cancel_requested(reasons[reason], stoppable),
                    ref.cancel(reason, stoppable),
                )
            kinds = {type(None): "none", Stop: "stop", Finish: "finish"}
            assert kinds[type(got)] == want, (kind, reason, stoppable)
        elif m.phase is Phase.RUNNING:  # outcomes only arrive while an attempt runs
            if kind == "return":
                got = m.returned(1)
            elif kind == "crash":
                got = crash(m, TaskCrashed("c"))
            else:
                got = fail(m, _error_for(kind))
            want_delay = ref.outcome(kind)
            if want_delay is None:
                assert isinstance(got, Finish), (kind, got)
            else:
                assert isinstance(got, Retry), (kind, got)
                assert (m.retry_delay(), got.attempt) == (want_delay, ref.attempt + 1)
        else:
            continue
        if isinstance(got, Finish):
            ended = got
        # The driver begins the next attempt once a retry's delay has passed (the delay
        # itself is the driver's business); a run that may not start begins nothing.
        if m.phase is Phase.RETRY_WAIT:
            assert ref.phase == "retry"
            assert m.begin() == ref.begin()
        if ref.final is not None:
            break
    if ref.final is None:
        assert m.phase is not Phase.FINAL
        assert ended is None
        return
    assert m.phase is Phase.FINAL
    assert ended is not None
    assert (ended.state.type.name, ended.state.name, ended.state.attempts) == ref.final
    assert m.begin() == 0
