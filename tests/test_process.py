"""ProcessPoolTaskRunner: tasks in worker processes, crash isolation, batching, stop.

Tasks that must be caught mid-run announce themselves through a FIFO (the test
blocks on reading it), so kills and cancels are ordered without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_gone

from asyncflow import flow, task
from asyncflow.exceptions import RemoteError, SerializationError, TaskCrashed, TaskTimeout
from asyncflow.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parent.parent


class Gate:
    """A FIFO a task writes its pid to when it starts; `wait()` blocks until then."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        os.mkfifo(self.path)

    def wait(self) -> int:
        with open(self.path) as fh:
            return int(fh.readline())


def announce(path: str) -> None:
    with open(path, "w") as fh:
        fh.write(f"{os.getpid()}\n")


@task
def square(x: int) -> int:
    return x * x


@task
def whoami() -> int:
    return os.getpid()


@task
async def async_whoami() -> int:
    await asyncio.sleep(0)
    return os.getpid()


@task
def block_forever(gate: str) -> None:
    announce(gate)
    while True:
        time.sleep(3600)


def test_sync_and_async_tasks_run_in_workers() -> None:
    with ProcessPoolTaskRunner(max_workers=2) as runner:
        pids = {runner.submit(whoami, {}).result(), runner.submit(async_whoami, {}).result()}
        assert square.submit(7).result() == 49
    assert os.getpid() not in pids


def test_closures_and_local_functions_are_pickled_by_value() -> None:
    offset = 10

    def local(x: int) -> int:
        return x + offset

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def pipeline() -> list[int]:
        return [task(local).submit(1).result(), task(lambda y: y * offset).submit(2).result()]

    assert pipeline() == [11, 20]


def test_map_keeps_order_and_gives_each_element_a_future() -> None:
    with ProcessPoolTaskRunner(max_workers=2) as runner:
        futures = runner.map(square, {"x": range(2000)})
        assert futures.result() == [x * x for x in range(2000)]
        assert all(f.state.is_completed() for f in futures)
    with ProcessPoolTaskRunner(max_workers=2, chunksize=1) as runner:
        assert runner.map(square, {"x": range(50)}).result() == [x * x for x in range(50)]


def test_map_iter_streams_through_worker_processes() -> None:
    with ProcessPoolTaskRunner(max_workers=2):
        assert list(square.map_iter(range(2000), max_concurrency=50)) == [
            x * x for x in range(2000)
        ]
        unordered = square.map_iter(range(100), max_concurrency=10, ordered=False)
        assert sorted(unordered) == [x * x for x in range(100)]


class Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("no pickling here")


@task
def echo(x: Any) -> Any:
    return x


@task
def make_unpicklable() -> Any:
    return Unpicklable()


def test_unpicklable_argument_or_result_fails_that_task_only() -> None:
    with ProcessPoolTaskRunner(max_workers=2) as runner:
        bad_arg = runner.submit(echo, {"x": Unpicklable()})
        bad_result = runner.submit(make_unpicklable, {})
        good = runner.submit(echo, {"x": 5})
        with pytest.raises(SerializationError, match=r"'echo'.*'x'.*Unpicklable"):
            bad_arg.result()
        with pytest.raises(SerializationError, match=r"Unpicklable"):
            bad_result.result()
        assert good.result() == 5
        assert bad_arg.state.is_failed()


class NeedsTwoArgs(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}-{b}")


@task
def raise_value_error() -> None:
    raise ValueError("bad value 42")


@task
def raise_unrebuildable() -> None:
    raise NeedsTwoArgs(1, 2)


def test_exceptions_keep_type_and_remote_traceback() -> None:
    with ProcessPoolTaskRunner(max_workers=1) as runner:
        fut = runner.submit(raise_value_error, {})
        exc = fut.exception()
        assert isinstance(exc, ValueError)
        assert str(exc) == "bad value 42"
        assert "raise_value_error" in str(exc.__cause__)  # the traceback text in the worker
        wrapped = runner.submit(raise_unrebuildable, {}).exception()
        assert isinstance(wrapped, RemoteError)
        assert wrapped.type_name == "NeedsTwoArgs"
        assert "1-2" in str(wrapped)


@task
def exit_hard(code: int) -> None:
    os._exit(code)


@task
def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@task
def segfault() -> None:
    ctypes.string_at(0)


@pytest.mark.parametrize(
    ("crasher", "params", "expected"),
    [
        (exit_hard, {"code": 3}, "exited with code 3"),
        (kill_self, {}, "SIGKILL"),
        (segfault, {}, "SIGSEGV"),
    ],
)
def test_a_dying_worker_crashes_only_its_task(crasher: Any, params: Any, expected: str) -> None:
    with ProcessPoolTaskRunner(max_workers=2) as runner:
        before = runner.map(square, {"x": range(20)})
        dead = runner.submit(crasher, params)
        after = runner.map(square, {"x": range(20)})
        with pytest.raises(TaskCrashed, match=rf"'{crasher.name}'.*{expected}"):
            dead.result()
        assert dead.state.type.name == "CRASHED"
        assert before.result() == after.result() == [x * x for x in range(20)]


@task
def crash_at(x: int, bad: int) -> int:
    if x == bad:
        os._exit(7)
    return x


def test_crash_inside_a_batch_charges_only_that_element() -> None:
    with ProcessPoolTaskRunner(max_workers=2, chunksize=50) as runner:
        futures = runner.map(crash_at, {"x": range(200), "bad": 120})
        states = [f.state for f in futures if f.wait() is None]
    crashed = [i for i, state in enumerate(states) if not state.is_completed()]
    assert crashed == [120]
    assert [f.result() for i, f in enumerate(futures) if i != 120] == [
        x for x in range(200) if x != 120
    ]


def test_sigkilled_worker_is_replaced_and_the_rest_finish(tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")
    with ProcessPoolTaskRunner(max_workers=2) as runner:
        victim = runner.submit(block_forever, {"gate": gate.path})
        pid = gate.wait()
        os.kill(pid, signal.SIGKILL)
        rest = runner.map(square, {"x": range(100)})
        assert rest.result() == [x * x for x in range(100)]
        assert isinstance(victim.exception(), TaskCrashed)
        assert "SIGKILL" in str(victim.exception())
        assert runner.submit(whoami, {}).result() != pid


def test_timeout_kills_and_replaces_the_worker(tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")
    # The deadline counts from when the run is handed to a worker, which may still be
    # starting: leave it time to start and announce itself before the deadline.
    slow = block_forever.with_options(timeout_seconds=2.0)
    with ProcessPoolTaskRunner(max_workers=1) as runner:
        fut = runner.submit(slow, {"gate": gate.path})
        pid = gate.wait()
        assert isinstance(fut.exception(), TaskTimeout)
        assert fut.state.name == "TimedOut"
        assert wait_gone({pid}) == set()
        assert square.submit(3).result() == 9  # a replacement worker


def test_cancel_running_task_kills_its_worker(tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")
    with ProcessPoolTaskRunner(max_workers=1) as runner:
        fut = runner.submit(block_forever, {"gate": gate.path})
        pid = gate.wait()
        assert fut.cancel() is True
        fut.wait()
        assert fut.state.type.name == "CANCELLED"
        assert wait_gone({pid}) == set()
        assert square.submit(4).result() == 16


@pytest.mark.asyncio
async def test_cancelling_an_async_flow_kills_its_running_process_task(tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    async def pipeline() -> None:
        await block_forever.submit(gate.path)

    flow_task = asyncio.create_task(pipeline())
    pid = await asyncio.to_thread(gate.wait)
    flow_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flow_task  # the flow's scope waited for the killed worker's run to end
    assert wait_gone({pid}) == set()


def test_a_failing_flow_body_kills_its_running_process_task(tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")
    started: list[Any] = []

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def pipeline() -> None:
        started.append(block_forever.submit(gate.path))
        started.append(gate.wait())
        raise ValueError("the body fails")

    with pytest.raises(ValueError, match="the body fails"):
        pipeline()
    fut, pid = started
    assert fut.state.is_cancelled()
    assert wait_gone({pid}) == set()


@task(retries=2)
def flaky(counter: str) -> int:
    path = Path(counter)
    attempts = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempts))
    if attempts < 2:
        raise RuntimeError("first attempt fails")
    return attempts


def test_retries_apply_to_process_tasks(tmp_path: Path) -> None:
    with ProcessPoolTaskRunner(max_workers=1) as runner:
        fut = runner.submit(flaky, {"counter": str(tmp_path / "n")})
        assert fut.result() == 2
        assert fut.state.attempts == 2


def _refuse_to_load() -> None:
    raise RuntimeError("this value cannot be rebuilt here")


class LoadsNowhere:
    """Pickles fine in the worker; rebuilding it (in the parent) raises."""

    def __reduce__(self) -> Any:
        return (_refuse_to_load, ())


@task
def make_loads_nowhere() -> Any:
    return LoadsNowhere()


def test_result_that_cannot_be_rebuilt_in_the_parent_fails_that_task() -> None:
    with ProcessPoolTaskRunner(max_workers=1) as runner:
        fut = runner.submit(make_loads_nowhere, {})
        with pytest.raises(SerializationError, match=r"'make_loads_nowhere'.*parent"):
            fut.result()
        assert runner.submit(square, {"x": 2}).result() == 4


@task(retries=2, retry_delay_seconds=0.05)
def flaky_with_delay(counter: str) -> int:
    path = Path(counter)
    attempts = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempts))
    if attempts < 3:
        raise ConnectionError(f"attempt {attempts} fails")
    return attempts


def test_retry_delays_apply_to_process_tasks(tmp_path: Path) -> None:
    with ProcessPoolTaskRunner(max_workers=1) as runner:
        fut = runner.submit(flaky_with_delay, {"counter": str(tmp_path / "n")})
        assert fut.result() == 3
        assert fut.state.attempts == 3


@flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
def inner_process_flow(n: int) -> list[int]:
    return square.map(range(n)).result()


@task
def runs_a_process_flow(n: int) -> tuple[int, list[int]]:
    return os.getpid(), inner_process_flow(n)


def test_a_process_task_may_use_processes_itself() -> None:
    with ProcessPoolTaskRunner(max_workers=1) as runner:
        pid, values = runner.submit(runs_a_process_flow, {"n": 4}).result()
    assert values == [0, 1, 4, 9]
    assert wait_gone({pid}) == set()


@task
def submits_inside_worker(n: int) -> list[int]:
    return square.map(range(n)).result()


def test_tasks_submitted_inside_a_worker_run_there() -> None:
    with ProcessPoolTaskRunner(max_workers=1) as runner:
        assert runner.submit(submits_inside_worker, {"n": 10}).result() == [
            x * x for x in range(10)
        ]


@flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
def process_child(xs: list[int]) -> list[int]:
    return square.map(xs).result()


@flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
def parent_flow() -> tuple[int, list[int]]:
    return square.submit(2).result(), process_child([1, 2, 3])


def test_process_flow_nested_in_a_thread_flow() -> None:
    assert parent_flow() == (4, [1, 4, 9])


@pytest.mark.asyncio
async def test_async_with_and_await() -> None:
    async with ProcessPoolTaskRunner(max_workers=2) as runner:
        assert await runner.submit(square, {"x": 5}) == 25
        assert await runner.map(square, {"x": [1, 2]}) == [1, 4]


def worker_pids(runner: ProcessPoolTaskRunner) -> set[int]:
    pool = runner._pool
    assert pool is not None
    return {w.process.pid for w in pool._workers if w.process.pid is not None}


@task
def fail() -> None:
    raise RuntimeError("flow fails")


def test_no_worker_survives_runner_exit_or_a_failing_flow() -> None:
    seen: set[int] = set()

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def failing() -> None:
        square.map(range(10)).result()
        runner = _current_process_runner()
        seen.update(worker_pids(runner))
        fail.submit().result()

    with pytest.raises(RuntimeError, match="flow fails"):
        failing()
    assert seen
    assert wait_gone(seen) == set()


def _current_process_runner() -> ProcessPoolTaskRunner:
    from asyncflow._runners._base import entered_runner

    runner = entered_runner()
    assert isinstance(runner, ProcessPoolTaskRunner)
    return runner


def test_settings_and_bad_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCFLOW_TASK_RUNNER_PROCESS_POOL_MAX_WORKERS", "3")
    assert ProcessPoolTaskRunner().max_workers == 3
    monkeypatch.delenv("ASYNCFLOW_TASK_RUNNER_PROCESS_POOL_MAX_WORKERS")
    assert ProcessPoolTaskRunner().max_workers == len(os.sched_getaffinity(0))
    assert ProcessPoolTaskRunner(2, mp_context="spawn").duplicate().max_workers == 2
    with pytest.raises(ValueError, match="max_workers"):
        ProcessPoolTaskRunner(0)
    with pytest.raises(ValueError, match="chunksize"):
        ProcessPoolTaskRunner(2, chunksize=0)
    with pytest.raises(ValueError, match="no-such-method"):
        ProcessPoolTaskRunner(2, mp_context="no-such-method")
    with pytest.raises(TypeError, match="mp_context"):
        ProcessPoolTaskRunner(2, mp_context=42)  # type: ignore[arg-type]


SCRIPT_HEAD = """
import os, sys, time
sys.path.insert(0, {root!r})
from asyncflow import flow, task
from asyncflow.task_runners import ProcessPoolTaskRunner

@task
def forever(i):
    os.write(1, f"started {{os.getpid()}}\\n".encode())  # one write: workers share stdout
    while True:
        time.sleep(3600)
"""


def _spawn_script(tmp_path: Path, body: str) -> subprocess.Popen[bytes]:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT_HEAD.format(root=str(ROOT)) + textwrap.dedent(body))
    return subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _read_started(
    proc: subprocess.Popen[bytes], n: int, also: bytes = b"", timeout: float = 20.0
) -> set[int]:
    """Pids of the first `n` workers that report "started" (once `also` was printed
    too); the script's output on failure."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while (seen.count(b"started") < n or also not in seen) and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 4096) if ready else b""
        if not chunk:
            break
        seen += chunk
    pids = {int(line.split()[1]) for line in seen.splitlines() if line.startswith(b"started")}
    if len(pids) < n or also not in seen:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"workers did not start: {seen!r}\nstderr: {err!r}")
    return pids


def test_ctrl_c_exits_fast_and_leaves_no_worker(tmp_path: Path) -> None:
    # A sync flow with a running thread task and a nested process flow whose two
    # workers run tasks that never end, plus two queued ones.
    proc = _spawn_script(
        tmp_path,
        """
        from asyncflow.task_runners import ThreadPoolTaskRunner
        from asyncflow._runners import _process_pool
        futures = []
        # Ctrl-C kills busy workers: a graceful stop would wait for good (and fail below).
        _process_pool.STOP_GRACE_SECONDS = 600

        @task
        def thread_forever():
            os.write(1, b"thread-running\\n")
            while True:
                time.sleep(3600)

        @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
        def crunch():
            futures.extend(forever.map(range(4)))
            futures[-1].result()

        @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
        def main():
            futures.append(thread_forever.submit())
            crunch()

        if __name__ == "__main__":
            try:
                main()
            finally:
                states = sorted(f.state.name for f in futures)
                os.write(1, f"states {states}\\n".encode())
        """,
    )
    workers = _read_started(proc, 2, also=b"thread-running")
    proc.send_signal(signal.SIGINT)
    try:  # its tasks never end: waiting for them would hang until this timeout
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.returncode is None:
            proc.kill()
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode != 0
    assert b"KeyboardInterrupt" in err
    assert wait_gone(workers) == set()
    # Every future ended in a final state: all five were cancelled.
    assert b"states ['Cancelled', 'Cancelled', 'Cancelled', 'Cancelled', 'Cancelled']" in out, out


def test_a_script_without_a_main_guard_gets_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    # Workers import the main module; this one runs its flow at import, so every worker
    # dies while starting. The runs end CRASHED saying so, instead of waiting for ever.
    script = tmp_path / "noguard.py"
    script.write_text(
        SCRIPT_HEAD.format(root=str(ROOT))
        + textwrap.dedent(
            """
            @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
            def main():
                return forever.map(range(2)).result()

            main()
            """
        )
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=50)
    assert proc.returncode == 1
    assert "TaskCrashed: task 'forever' crashed: worker processes exit before" in proc.stderr
    assert "if __name__ == '__main__':" in proc.stderr


def test_module_level_tasks_are_sent_by_name_without_cloudpickle(tmp_path: Path) -> None:
    # `@task` replaces the function in its module, so plain pickle cannot find it by
    # name; asyncflow sends "the function of task mytasks.square" instead, and
    # cloudpickle is only needed for closures and tasks in `__main__`.
    (tmp_path / "mytasks.py").write_text(
        textwrap.dedent(
            """
            from asyncflow import task

            @task
            def square(x):
                return x * x
            """
        )
    )
    script = tmp_path / "main.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path[:0] = [{str(ROOT)!r}, {str(tmp_path)!r}]
            sys.modules["cloudpickle"] = None  # importing it now fails
            from asyncflow.task_runners import ProcessPoolTaskRunner
            import mytasks

            if __name__ == "__main__":
                with ProcessPoolTaskRunner(max_workers=1) as runner:
                    print(runner.map(mytasks.square, {{"x": [1, 2, 3]}}).result())
            """
        )
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[1, 4, 9]"


def test_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    proc = _spawn_script(
        tmp_path,
        """
        if __name__ == "__main__":
            with ProcessPoolTaskRunner(max_workers=2) as runner:
                runner.map(forever, {"i": range(2)}).result()
        """,
    )
    workers = _read_started(proc, 2)
    proc.kill()
    proc.communicate(timeout=10)
    assert wait_gone(workers) == set()


# ---- issue 11: batching only for .map, Running only once started, clean cancels -------


def wait_for_path(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"{path.name} did not appear within {timeout} s")
        time.sleep(0.005)  # polling the file system, bounded


def wait_for_state(fut: Any, name: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while fut.state.name != name:
        if time.monotonic() > deadline:
            pytest.fail(f"{fut!r} is {fut.state.name}, not {name}, after {timeout} s")
        time.sleep(0.005)  # the reader thread polls workers for starts: bounded


@task
def hold(directory: str, name: str) -> str:
    """Marks `<name>.started`, then waits for `release` to exist."""
    base = Path(directory)
    (base / f"{name}.started").write_text(str(os.getpid()))
    while not (base / "release").exists():
        time.sleep(0.005)  # released by the test
    return name


def test_submitted_runs_run_at_once_on_separate_workers(tmp_path: Path) -> None:
    with ProcessPoolTaskRunner(max_workers=2) as runner:
        first = runner.submit(hold, {"directory": str(tmp_path), "name": "a"})
        second = runner.submit(hold, {"directory": str(tmp_path), "name": "b"})
        # Both start while the other still holds: they were not batched together.
        wait_for_path(tmp_path / "a.started")
        wait_for_path(tmp_path / "b.started")
        wait_for_state(first, "Running")  # reported by the reader's next poll
        wait_for_state(second, "Running")
        (tmp_path / "release").touch()
        assert [first.result(), second.result()] == ["a", "b"]
    assert (tmp_path / "a.started").read_text() != (tmp_path / "b.started").read_text()


def test_a_run_waiting_in_a_map_batch_is_pending_and_cancels_alone(tmp_path: Path) -> None:
    with ProcessPoolTaskRunner(max_workers=1, chunksize=3) as runner:
        futures = runner.map(hold, {"directory": str(tmp_path), "name": ["a", "b", "c"]})
        wait_for_path(tmp_path / "a.started")
        wait_for_state(futures[0], "Running")
        assert [f.state.name for f in futures[1:]] == ["Pending", "Pending"]
        pid = int((tmp_path / "a.started").read_text())
        assert futures[1].cancel() is True
        assert futures[1].state.is_cancelled()
        (tmp_path / "release").touch()
        assert futures[0].result() == "a"  # the run beside it was not touched
        assert futures[2].result() == "c"
        assert int((tmp_path / "c.started").read_text()) == pid  # same worker, not killed
    assert not (tmp_path / "b.started").exists()  # the cancelled run never executed


def test_cancel_all_and_a_raising_block_cancel_runs_waiting_in_a_batch(tmp_path: Path) -> None:
    with ProcessPoolTaskRunner(max_workers=1, chunksize=4) as runner:
        futures = runner.map(hold, {"directory": str(tmp_path), "name": ["a", "b", "c", "d"]})
        wait_for_path(tmp_path / "a.started")
        wait_for_state(futures[0], "Running")  # else it is Pending, and cancelled too
        assert runner.cancel_all() == 3
        (tmp_path / "release").touch()
        assert futures[0].result() == "a"
    assert [f.state.name for f in futures[1:]] == ["Cancelled"] * 3
    assert not any((tmp_path / f"{n}.started").exists() for n in "bcd")

    (tmp_path / "release").unlink()
    with (  # noqa: PT012  (the runner's block itself must raise)
        pytest.raises(ValueError, match="body"),
        ProcessPoolTaskRunner(max_workers=1, chunksize=3) as runner,
    ):
        futures = runner.map(hold, {"directory": str(tmp_path), "name": ["e", "f", "g"]})
        wait_for_path(tmp_path / "e.started")
        raise ValueError("the body fails")
    assert [f.state.name for f in futures] == ["Cancelled"] * 3  # the running one killed
    assert not any((tmp_path / f"{n}.started").exists() for n in "fg")


# ---- issue 11: a crash is retried like a failure ---------------------------------------


@task
def crash_first_time(counter: str) -> int:
    path = Path(counter)
    attempts = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempts))
    if attempts == 1:
        os._exit(9)
    return attempts


def _never_crashes_again(task: Any, exc: BaseException) -> bool:
    return not isinstance(exc, TaskCrashed)


def test_a_crashed_process_run_is_retried_on_another_worker(tmp_path: Path) -> None:
    with ProcessPoolTaskRunner(max_workers=1) as runner:
        retried = runner.submit(
            crash_first_time.with_options(retries=1), {"counter": str(tmp_path / "a")}
        )
        assert retried.result() == 2
        assert retried.state.attempts == 2

        once = runner.submit(crash_first_time, {"counter": str(tmp_path / "b")})
        with pytest.raises(TaskCrashed, match=r"'crash_first_time'.*exited with code 9"):
            once.result()
        assert once.state.is_crashed()
        assert once.state.attempts == 1

        refused = crash_first_time.with_options(retries=3, retry_condition_fn=_never_crashes_again)
        fut = runner.submit(refused, {"counter": str(tmp_path / "c")})
        assert isinstance(fut.exception(), TaskCrashed)
        assert fut.state.is_crashed()
        assert fut.state.attempts == 1

        always = exit_hard.with_options(retries=2)
        fut = runner.submit(always, {"code": 4})
        assert isinstance(fut.exception(), TaskCrashed)
        assert fut.state.is_crashed()
        assert fut.state.attempts == 3


# ---- issue 11: every SerializationError names the task ---------------------------------

PARENT_PID = os.getpid()


def _fails_outside_the_parent(parent: int) -> Any:
    if os.getpid() != parent:
        raise LookupError("this value cannot be rebuilt in a worker")
    return "rebuilt"


class LoadsOnlyInParent:
    def __reduce__(self) -> Any:
        return (_fails_outside_the_parent, (PARENT_PID,))


class CallableLoadsOnlyInParent:
    __name__ = "callable_loads_only_in_parent"

    def __call__(self) -> int:
        return 1

    def __reduce__(self) -> Any:
        return (_fails_outside_the_parent, (PARENT_PID,))


def test_serialization_errors_in_the_worker_name_the_task() -> None:
    with ProcessPoolTaskRunner(max_workers=1) as runner:
        bad_result = runner.submit(make_unpicklable, {})
        with pytest.raises(
            SerializationError, match=r"task 'make_unpicklable': its result, of type Unpicklable"
        ):
            bad_result.result()
        bad_arg = runner.submit(echo, {"x": LoadsOnlyInParent()})
        with pytest.raises(
            SerializationError, match=r"task 'echo': its arguments could not be unpickled.*Lookup"
        ):
            bad_arg.result()
        bad_fn = task(CallableLoadsOnlyInParent(), name="loads-only-in-parent")
        with pytest.raises(
            SerializationError,
            match=r"task 'loads-only-in-parent': its function could not be unpickled.*Lookup",
        ):
            runner.submit(bad_fn, {}).result()
        assert runner.submit(square, {"x": 3}).result() == 9
