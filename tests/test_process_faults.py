"""ProcessPoolTaskRunner faults that used to hang or wedge the runner (issue 11):
reducers raising in the parent, an error inside the I/O thread, fork-context
workers. Every case that could hang runs in a subprocess with a hard timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from helpers import pid_alive

from asyncflow import task
from asyncflow.task_runners import ProcessPoolTaskRunner

pytestmark = [pytest.mark.fault, pytest.mark.timeout(90)]
ROOT = Path(__file__).resolve().parent.parent
HEAD = f"""
import os, sys, time, threading, warnings
sys.path.insert(0, {str(ROOT)!r})
from asyncflow import task
from asyncflow.task_runners import ProcessPoolTaskRunner
PARENT = os.getpid()
"""


def run_script(
    tmp_path: Path, body: str, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(HEAD + textwrap.dedent(body))
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=timeout,  # a hang fails here instead of hanging the suite
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_reducers_raising_base_exceptions_in_the_parent_fail_only_their_run(
    tmp_path: Path,
) -> None:
    proc = run_script(
        tmp_path,
        """
        def explode(exc):
            if os.getpid() == PARENT:
                raise exc
            return exc

        class ExitsInParent:
            def __reduce__(self):
                return (explode, (SystemExit(3),))

        class InterruptsInParent(Exception):
            def __reduce__(self):
                return (explode, (KeyboardInterrupt(),))

        @task
        def exits_in_parent():
            return ExitsInParent()

        @task
        def interrupts_in_parent():
            raise InterruptsInParent()

        @task
        def square(x):
            return x * x

        if __name__ == "__main__":
            with ProcessPoolTaskRunner(max_workers=1) as runner:
                for t in (exits_in_parent, interrupts_in_parent):
                    exc = runner.submit(t, {}).exception(timeout=20)
                    print(type(exc).__name__, exc)
                print("later", runner.map(square, {"x": range(5)}).result(timeout=20))
            print("left")
        """,
    )
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("SerializationError task 'exits_in_parent': its result could")
    assert "SystemExit" in lines[0]
    assert lines[1].startswith("SerializationError task 'interrupts_in_parent' failed, and its")
    assert "KeyboardInterrupt" in lines[1]
    assert lines[2:] == ["later [0, 1, 4, 9, 16]", "left"]


def test_sys_exit_reducer_on_result(tmp_path: Path) -> None:
    # CPython's test_exit_during_result_unpickle_in_result_handler, here.
    proc = run_script(
        tmp_path,
        """
        class ExitOnUnpickle:
            def __reduce__(self):
                return (sys.exit, (3,))

        @task
        def make():
            return ExitOnUnpickle()

        if __name__ == "__main__":
            with ProcessPoolTaskRunner(max_workers=1) as runner:
                fut = runner.submit(make, {})
                fut.wait(20)
                print(fut.state.name, type(fut.exception(timeout=0)).__name__)
                again = runner.submit(make, {})
                again.wait(20)
                print(again.state.name)
            print("left")
        """,
    )
    assert proc.stdout.splitlines() == ["Failed SerializationError", "Failed", "left"]


def test_an_error_inside_the_io_thread_fails_the_runs_it_handled(tmp_path: Path) -> None:
    proc = run_script(
        tmp_path,
        """
        from asyncflow._runners import _process_pool

        real = _process_pool.ProcessPool._finish
        failed = []

        def finish_once_broken(self, item, kind, payload):
            if not failed:
                failed.append(1)
                raise RuntimeError("injected bug")
            return real(self, item, kind, payload)

        _process_pool.ProcessPool._finish = finish_once_broken

        @task
        def square(x):
            return x * x

        if __name__ == "__main__":
            with ProcessPoolTaskRunner(max_workers=1) as runner:
                first = runner.submit(square, {"x": 2})
                first.wait(20)
                print(first.state.name, first.exception())
                print(runner.submit(square, {"x": 3}).result(timeout=20))
            print("left")
        """,
    )
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Crashed task 'square' crashed: RuntimeError: injected bug")
    assert lines[1:] == ["9", "left"]
    assert "injected bug" in proc.stderr  # logged, with its traceback


def test_a_forked_worker_runs_while_another_thread_held_the_engine_lock(tmp_path: Path) -> None:
    proc = run_script(
        tmp_path,
        """
        from asyncflow._core._future import LOCK

        @task
        def square(x):
            return x * x

        @task
        def nested(x):  # uses the engine (and its lock) inside the forked worker
            return square.submit(x).result(timeout=10)

        if __name__ == "__main__":
            held, release = threading.Event(), threading.Event()

            def hold_lock():
                with LOCK:
                    held.set()
                    release.wait()

            holder = threading.Thread(target=hold_lock)
            holder.start()
            held.wait()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # fork beside threads
                with ProcessPoolTaskRunner(max_workers=1, mp_context="fork") as runner:
                    fut = runner.submit(nested, {"x": 7})
                    deadline = time.monotonic() + 20
                    while not runner._pool._workers and time.monotonic() < deadline:
                        time.sleep(0.005)  # until the worker is forked, LOCK held
                    release.set()
                    print(fut.result(timeout=20))
            holder.join()
        """,
    )
    assert proc.stdout.split() == ["49"]


def test_forked_workers_exit_when_the_parent_is_sigkilled(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        HEAD
        + textwrap.dedent(
            """
            @task
            def forever(i):
                os.write(1, f"started {os.getpid()}\\n".encode())
                while True:
                    time.sleep(3600)

            if __name__ == "__main__":
                with ProcessPoolTaskRunner(max_workers=2, mp_context="fork") as runner:
                    for i in range(2):
                        runner.submit(forever, {"i": i})
                    time.sleep(3600)
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        workers = {int(proc.stdout.readline().split()[1]) for _ in range(2)}
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    deadline = time.monotonic() + 10
    while (alive := {p for p in workers if pid_alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.01)  # polling /proc for the workers' exits, bounded
    for pid in alive:
        os.kill(pid, signal.SIGKILL)  # do not leak them into the rest of the suite
    assert alive == set()


@task
def triple(x: int) -> int:
    return 3 * x


# Python 3.12+ warns too, when it forks beside threads: that is the point of this test.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_fork_beside_running_threads_warns() -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, name="bystander")
    other.start()
    try:
        with (
            pytest.warns(RuntimeWarning, match=r'mp_context="fork".*other thread.*forkserver'),
            ProcessPoolTaskRunner(max_workers=1, mp_context="fork") as runner,
        ):
            assert runner.submit(triple, {"x": 2}).result(timeout=20) == 6
    finally:
        stop.set()
        other.join()


def test_fork_without_other_threads_does_not_warn(tmp_path: Path) -> None:
    proc = run_script(  # -W error: a warning would fail the script
        tmp_path,
        """
        @task
        def square(x):
            return x * x

        if __name__ == "__main__":
            assert threading.active_count() == 1
            with ProcessPoolTaskRunner(max_workers=1, mp_context="fork") as runner:
                print(runner.submit(square, {"x": 5}).result(timeout=20))
        """,
    )
    assert proc.stdout.split() == ["25"]
