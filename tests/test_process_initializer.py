"""`ProcessPoolTaskRunner(initializer=, initargs=)`: once per worker, before its calls.

The initializer and the tasks live in this (importable) module, so both travel by
name and share its globals in the worker. Counting uses a `Tally` (one line per
event, appended by whichever process): the initializer writes its worker's pid, so
the test sees how many times, and in which workers, it ran. Two runs that must be on
two different workers meet at a cross-process barrier (a `Tally` both wait to fill).
A broken initializer runs in a subprocess with a hard timeout: a regression there
would hang the runner's exit, and must fail instead.
"""

from __future__ import annotations

import multiprocessing.context
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import POLL, WAIT, FileGate, Tally

from asyncflow import task
from asyncflow._runners import _process_pool
from asyncflow._runners._process_pool import ProcessPool
from asyncflow.exceptions import SerializationError, TaskCrashed
from asyncflow.task_runners import ProcessPoolTaskRunner

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parent.parent

CONFIG: Any = None  # what `configure` sets in each worker


def configure(value: Any, tally: Tally | None = None) -> None:
    global CONFIG
    CONFIG = value
    if tally is not None:
        tally.add(str(os.getpid()))


def fail_in_the_first_worker(tally: Tally) -> None:
    if tally.add(str(os.getpid())) == 1:
        raise ConnectionError("the database is not up yet")


@task
def read_config(x: int) -> tuple[Any, int]:
    return CONFIG, x


@task
async def async_read_config(x: int) -> tuple[Any, int]:
    return CONFIG, x


@task
def meet(tally: Tally, parties: int) -> int:
    """Return this worker's pid once `parties` runs have arrived (on as many workers)."""
    tally.add(str(os.getpid()))
    deadline = time.monotonic() + WAIT
    while len(tally) < parties:
        assert time.monotonic() < deadline, "the other run never arrived"
        time.sleep(POLL)  # polling the shared file, bounded: a barrier, not a delay
    return os.getpid()


@task
def whoami(x: int = 0) -> int:
    return os.getpid()


@task
def exit_hard() -> None:
    os._exit(5)


@pytest.mark.parametrize("reader", [read_config, async_read_config])
def test_the_initializer_sets_a_global_that_tasks_read(reader: Any) -> None:
    with ProcessPoolTaskRunner(max_workers=2, initializer=configure, initargs=("ready",)) as runner:
        assert runner.map(reader, {"x": range(6)}).result() == [("ready", x) for x in range(6)]
    assert CONFIG is None  # it ran in the workers, not here


def test_the_initializer_runs_in_spawned_workers_too() -> None:
    runner = ProcessPoolTaskRunner(
        max_workers=1, mp_context="spawn", initializer=configure, initargs=("spawned",)
    )
    with runner:
        assert runner.submit(read_config, {"x": 3}).result() == ("spawned", 3)


def test_the_initializer_runs_once_in_each_worker(tmp_path: Path) -> None:
    inits = Tally(tmp_path / "inits")
    arrived = Tally(tmp_path / "arrived")
    with ProcessPoolTaskRunner(max_workers=2, initializer=configure, initargs=(1, inits)) as runner:
        # Two runs that wait for each other: they hold both workers at once.
        both = {runner.submit(meet, {"tally": arrived, "parties": 2}) for _ in range(2)}
        workers = {fut.result() for fut in both}
        later = {fut.result() for fut in runner.map(whoami, {"x": range(20)})}
    assert len(workers) == 2
    assert later <= workers  # no other worker started
    assert sorted(inits.lines()) == sorted(str(pid) for pid in workers)  # once each


def test_a_replacement_worker_runs_the_initializer_again(tmp_path: Path) -> None:
    inits = Tally(tmp_path / "inits")
    with ProcessPoolTaskRunner(max_workers=1, initializer=configure, initargs=(2, inits)) as runner:
        first = runner.submit(whoami, {}).result()
        with pytest.raises(TaskCrashed, match="exited with code 5"):
            runner.submit(exit_hard, {}).result()
        second = runner.submit(whoami, {}).result()
        assert runner.submit(read_config, {"x": 0}).result() == (2, 0)
    assert first != second
    assert inits.lines() == [str(first), str(second)]


def test_a_worker_whose_initializer_failed_hands_its_runs_to_the_next(tmp_path: Path) -> None:
    # Fewer than MAX_FAILED_STARTS failures in a row: the runs wait for a worker that
    # starts, and succeed there.
    inits = Tally(tmp_path / "inits")
    init = fail_in_the_first_worker
    with ProcessPoolTaskRunner(max_workers=1, initializer=init, initargs=(inits,)) as runner:
        pids = runner.map(whoami, {"x": range(3)}).result()
    failed, started = inits.lines()
    assert {str(pid) for pid in pids} == {started} != {failed}


SCRIPT = """
import os, sys
sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
from helpers import Tally
from asyncflow import task
from asyncflow._runners import _process_pool
from asyncflow._runners._process_pool import ProcessPool
from asyncflow.exceptions import TaskCrashed
from asyncflow.task_runners import ProcessPoolTaskRunner

STARTS = Tally({starts!r})

def connect(url):
    STARTS.add(str(os.getpid()))
    raise ConnectionRefusedError(f"cannot reach {{url}}")

@task
def work(x):
    return x

if __name__ == "__main__":
    runner = ProcessPoolTaskRunner(max_workers=2, initializer=connect, initargs=("db://x",))
    with runner:
        futures = [*runner.map(work, {{"x": range(5)}}), runner.submit(work, {{"x": 9}})]
        for fut in futures:
            fut.wait(30)
            assert fut.done(), "a run never ended"
        starts_first = len(STARTS)
        again = runner.submit(work, {{"x": 10}})  # a later submission tries again
        again.wait(30)
        assert again.done(), "the later run never ended"
        for fut in [*futures, again]:
            error = fut.exception()
            assert fut.state.is_crashed(), fut.state
            assert isinstance(error, TaskCrashed), error
            assert isinstance(error.__cause__, ConnectionRefusedError), error.__cause__
            assert str(error.__cause__) == "cannot reach db://x"
    print("MESSAGE", futures[0].state.message)
    print("STARTS", starts_first, len(STARTS))
"""


def line_of(out: str, tag: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(tag))


@pytest.mark.timeout(90)
def test_a_raising_initializer_ends_every_run_crashed_without_a_hang(tmp_path: Path) -> None:
    script = tmp_path / "broken_init.py"
    starts = str(tmp_path / "starts")
    script.write_text(
        textwrap.dedent(SCRIPT).format(root=str(ROOT), tests=str(ROOT / "tests"), starts=starts)
    )
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=60,  # a hang fails here instead of hanging the suite
    )
    assert proc.returncode == 0, proc.stderr
    message = line_of(proc.stdout, "MESSAGE")
    assert "task 'work' crashed: the initializer 'connect' of ProcessPoolTaskRunner" in message
    assert "3 times in a row: ConnectionRefusedError: cannot reach db://x" in message
    # Each failure is logged with the worker's traceback.
    assert "the initializer 'connect' of ProcessPoolTaskRunner failed in worker" in proc.stderr
    assert ", in connect\nConnectionRefusedError: cannot reach db://x" in proc.stderr
    # Bounded restarts: 3 failed starts in a row end the queued runs; runs on a worker
    # that was still starting then go round once more. Then the same for the later run.
    first, total = map(int, line_of(proc.stdout, "STARTS").split()[1:])
    assert 3 <= first <= 12, first
    assert 3 <= total - first <= 5, (first, total)


def test_bad_initializer_arguments_are_refused_at_construction() -> None:
    with pytest.raises(TypeError, match=r"ProcessPoolTaskRunner: initializer must be .*42"):
        ProcessPoolTaskRunner(initializer=42)  # type: ignore[arg-type]  # the mistake tested
    with pytest.raises(TypeError, match=r"ProcessPoolTaskRunner: initargs must be a tuple.*\[1\]"):
        ProcessPoolTaskRunner(initializer=configure, initargs=[1])  # type: ignore[arg-type]  # the mistake tested
    with pytest.raises(ValueError, match=r"initargs=\(1,\) given without an initializer"):
        ProcessPoolTaskRunner(initargs=(1,))


def test_an_unpicklable_initializer_or_initargs_is_refused_at_construction() -> None:
    lock = threading.Lock()

    def holds_a_lock() -> None:
        assert lock  # a closure over a lock: cloudpickle cannot carry it

    with pytest.raises(
        SerializationError, match=r"ProcessPoolTaskRunner: the initializer cannot be pickled"
    ) as raised:
        ProcessPoolTaskRunner(initializer=holds_a_lock)
    assert "holds_a_lock" in str(raised.value)
    with pytest.raises(
        SerializationError,
        match=r"the initargs of initializer 'configure' cannot be pickled.*lock",
    ):
        ProcessPoolTaskRunner(initializer=configure, initargs=(lock,))


def test_duplicate_and_repr_keep_the_initializer(tmp_path: Path) -> None:
    template = ProcessPoolTaskRunner(max_workers=1, initializer=configure, initargs=("copy",))
    assert repr(template) == (
        "ProcessPoolTaskRunner(max_workers=1, initializer=configure, initargs=('copy',))"
    )
    copy = template.duplicate()
    assert repr(copy) == repr(template)
    with copy:
        assert copy.submit(read_config, {"x": 1}).result() == ("copy", 1)
    assert repr(ProcessPoolTaskRunner(max_workers=1)) == "ProcessPoolTaskRunner(max_workers=1)"


# ---- a worker still starting when the runner is abandoned ------------------------------
STARTING = threading.Event()  # the reader thread is inside `process.start()`
CLOSING = threading.Event()  # the runner's shutdown has taken its list of workers


class GatedProcess(multiprocessing.context.ForkServerProcess):
    """A worker process whose `start()` returns only once the shutdown began, so the
    pool learns of it after taking the list of workers to kill."""

    def start(self) -> None:
        super().start()
        STARTING.set()
        assert CLOSING.wait(WAIT)


class GatedContext(multiprocessing.context.ForkServerContext):
    Process = GatedProcess


def never_ready(gate: FileGate) -> None:
    gate.wait()  # never opened: the worker stays in its initializer (for WAIT s at most)


@pytest.mark.timeout(30)
def test_a_worker_started_during_an_abandoning_shutdown_is_killed_not_awaited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CI race behind a 5 s exit after SIGTERM: the shutdown (kill=True) killed the
    # workers it knew of, while the I/O thread was still starting one; that one was
    # asked to stop gracefully, never read the request (still starting), and the
    # shutdown waited its full 5 s for the I/O thread before killing it.
    STARTING.clear()
    CLOSING.clear()
    take_queue = ProcessPool._take_queue

    def take_queue_then_release_the_start(self: ProcessPool, closing: bool = False) -> Any:
        taken = take_queue(self, closing)
        if closing:
            CLOSING.set()
        return taken

    monkeypatch.setattr(ProcessPool, "_take_queue", take_queue_then_release_the_start)
    stopped: list[Any] = []  # workers asked to stop gracefully (a kill must never ask)
    stop = _process_pool._stop
    monkeypatch.setattr(_process_pool, "_stop", lambda w: (stopped.append(w), stop(w)))
    init = never_ready
    gate = FileGate(tmp_path / "never")
    runner = ProcessPoolTaskRunner(
        max_workers=1, mp_context=GatedContext(), initializer=init, initargs=(gate,)
    )
    with runner:
        fut = runner.submit(whoami, {})
        assert STARTING.wait(WAIT)
        runner.abandon("abandoned by the test")  # as SIGTERM does
        left = time.monotonic()
    took = time.monotonic() - left
    assert fut.state.is_cancelled()
    assert stopped == []
    assert took < 4.0, took  # the bug: the shutdown's full 5 s wait for the I/O thread
