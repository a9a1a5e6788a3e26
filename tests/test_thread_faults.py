"""Faults in task code (issue 11): timed-out thread runs that never return (defect 1),
and `sys.exit()` called by a task (defect 8)."""

from __future__ import annotations

import asyncio
import os
import pickle
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest
from helpers import WAIT

from asyncflow import exceptions, flow, task
from asyncflow._core._workers import WorkerPool
from asyncflow.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

# ---- defect 1: a timed-out thread run is abandoned -----------------------------------


def test_worker_pool_abandon_frees_the_slot_and_shutdown_does_not_join() -> None:
    pool = WorkerPool(1, "abandon-test")
    started, gate, ran = threading.Event(), threading.Event(), threading.Event()
    item = object()

    def blocks(arg: object) -> None:
        started.set()
        gate.wait(WAIT)

    pool.submit(blocks, item)
    assert started.wait(WAIT)
    abandoned = next(t for t in threading.enumerate() if t.name.startswith("abandon-test"))
    assert not pool.abandon(object())  # not running: nothing to abandon
    assert pool.abandon(item)
    assert pool.thread_count == 0
    pool.submit(lambda _: ran.set(), None)  # the slot is free again
    assert ran.wait(WAIT)
    pool.shutdown(wait=True)  # joins the replacement, not the abandoned thread
    assert abandoned.is_alive()  # joining it would have waited until its gate timed out
    assert not gate.is_set()
    gate.set()
    abandoned.join(WAIT)  # it retires once its item returns
    assert not abandoned.is_alive()


def test_abandoned_worker_blocking_wait_lends_no_slot() -> None:
    from asyncflow._core._context import enter_blocking, exit_blocking

    pool = WorkerPool(1, "abandon-blocked")
    blocking, gate = threading.Event(), threading.Event()
    item = object()

    def waits(arg: object) -> None:
        token = enter_blocking()  # as a task waiting for its child's future does
        blocking.set()
        gate.wait(WAIT)
        exit_blocking(token)

    pool.submit(waits, item)
    assert blocking.wait(WAIT)
    assert pool._blocked == 1
    assert pool.abandon(item)
    assert pool._blocked == 0  # its wait no longer counts: max_workers stays the bound
    gate.set()
    pool.shutdown(wait=True)
    assert pool._blocked == 0


@pytest.mark.timeout(20)
def test_timed_out_thread_run_gives_its_slot_back_and_is_not_joined() -> None:
    gate = threading.Event()

    returned = threading.Event()

    @task(timeout_seconds=0.1)
    def blocks() -> str:
        gate.wait(WAIT)
        returned.set()
        return "late"

    @task
    def quick() -> int:
        return 7

    try:
        with ThreadPoolTaskRunner(max_workers=1):
            stuck = blocks.submit()
            with pytest.raises(exceptions.TaskTimeout, match="blocks"):
                stuck.result(timeout=WAIT)
            assert quick.submit().result(timeout=WAIT) == 7  # runs while `blocks` blocks
            assert not gate.is_set()
        # Had the block waited for the abandoned thread, its body would have returned.
        assert not returned.is_set(), "the with block waited for an abandoned thread"
        assert stuck.state.name == "TimedOut"
    finally:
        gate.set()
    assert stuck.state.name == "TimedOut"  # the late result is discarded


@pytest.mark.timeout(20)
def test_flow_timeout_abandons_its_running_thread_runs() -> None:
    gate = threading.Event()
    futures: list[Any] = []

    returned = threading.Event()

    @task
    def blocks() -> None:
        gate.wait(WAIT)
        returned.set()

    @flow(timeout_seconds=0.1, task_runner=ThreadPoolTaskRunner(max_workers=1))
    def slow_flow() -> None:
        futures.append(blocks.submit())
        futures[0].result()

    try:
        with pytest.raises(exceptions.TaskTimeout, match="slow_flow"):
            slow_flow()
        assert not returned.is_set()  # the flow did not wait for its abandoned thread run
        assert not gate.is_set()
        assert futures[0].state.name == "TimedOut"
    finally:
        gate.set()


HANG_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    from asyncflow import exceptions, flow, task
    from asyncflow.task_runners import ThreadPoolTaskRunner

    forever = threading.Event()  # never set: the task never returns

    @task(timeout_seconds=0.1)
    def blocks():
        forever.wait()

    @task
    def blocks_untimed():
        forever.wait()

    @task
    def quick():
        return "quick ran"

    def timed_out_then_quick():
        try:
            blocks.submit().result()
        except exceptions.TaskTimeout:
            print("timed out", flush=True)
        print(quick.submit().result(), flush=True)

    mode = sys.argv[1]
    if mode == "default":  # the process-wide default runner, no flow
        timed_out_then_quick()
    elif mode == "with":
        with ThreadPoolTaskRunner(max_workers=1):
            timed_out_then_quick()
    elif mode == "flow":
        flow(task_runner=ThreadPoolTaskRunner(max_workers=1))(timed_out_then_quick)()
    elif mode == "flow-timeout":
        @flow(timeout_seconds=0.1, task_runner=ThreadPoolTaskRunner(max_workers=1))
        def slow():
            blocks_untimed.submit().result()
        try:
            slow()
        except exceptions.TaskTimeout:
            print("timed out", flush=True)
        print(quick.submit().result(), flush=True)  # on the default runner
    print("end of script", flush=True)
    """
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["default", "with", "flow", "flow-timeout"])
def test_a_never_returning_timed_out_task_does_not_hang_exit(tmp_path: Any, mode: str) -> None:
    script = tmp_path / "hang.py"
    script.write_text(HANG_SCRIPT)
    env = {
        **os.environ,
        "PYTHONPATH": os.getcwd(),
        "ASYNCFLOW_TASK_RUNNER_THREAD_POOL_MAX_WORKERS": "1",
    }
    # The timed-out task never returns: an exit that waited for it hangs until `timeout`.
    proc = subprocess.run(
        [sys.executable, str(script), mode], capture_output=True, text=True, env=env, timeout=20
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:3] == ["timed out", "quick ran", "end of script"]


# ---- defect 8: sys.exit() in a task is that task failing -----------------------------


@task
def exits(code: str | int | None = 3) -> None:
    sys.exit(code)


@task
async def exits_async(code: str | int | None = 3) -> None:
    await asyncio.sleep(0)
    sys.exit(code)


def _check_exited(fut: Any, name: str = "exits", call: str = "sys.exit(3)") -> None:
    assert fut.state.is_failed(), fut.state
    err = fut.exception(timeout=WAIT)
    assert isinstance(err, exceptions.TaskExited)
    assert str(err) == f"task {name!r} called {call}"
    assert isinstance(err.__cause__, SystemExit)
    with pytest.raises(exceptions.TaskExited):
        fut.result()


@pytest.mark.timeout(10)
def test_sys_exit_in_a_thread_or_async_task_fails_it() -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        sync_fut, async_fut = exits.submit(), exits_async.submit()
        sync_fut.wait(WAIT)
        async_fut.wait(WAIT)
    _check_exited(sync_fut)
    _check_exited(async_fut, "exits_async")
    assert sync_fut.exception().code == 3  # type: ignore[union-attr]  # checked above


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("code", "call"), [(None, "sys.exit()"), ("bye", "sys.exit('bye')"), (0, "sys.exit(0)")]
)
def test_sys_exit_message_shows_the_code(code: str | int | None, call: str) -> None:
    with ThreadPoolTaskRunner(max_workers=1):
        fut = exits.submit(code)
        fut.wait(WAIT)
    _check_exited(fut, call=call)
    assert fut.exception().code == code  # type: ignore[union-attr]  # a TaskExited


@pytest.mark.timeout(10)
def test_sys_exit_in_a_direct_call_does_not_exit_the_caller() -> None:
    with pytest.raises(exceptions.TaskExited, match=r"task 'exits' called sys.exit\(3\)"):
        exits()


@pytest.mark.asyncio
@pytest.mark.timeout(10)
async def test_sys_exit_in_an_awaited_async_task() -> None:
    with pytest.raises(exceptions.TaskExited, match="exits_async"):
        await exits_async()


@pytest.mark.timeout(10)
def test_a_flow_body_sees_a_failure_not_an_interrupt() -> None:
    gate = threading.Event()

    @task
    def other() -> str:
        assert gate.wait(WAIT)
        return "finished"

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def body() -> str:
        running = other.submit()
        with pytest.raises(exceptions.TaskExited):
            exits.submit().result()
        gate.set()
        return running.result()  # not cancelled: the exit was the task's own failure

    assert body() == "finished"


@pytest.mark.timeout(10)
def test_sys_exit_is_retried_like_any_failure() -> None:
    calls: list[int] = []

    @task(retries=1)
    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            sys.exit(1)
        return "ok"

    with ThreadPoolTaskRunner(max_workers=1):
        fut = flaky.submit()
        assert fut.result(timeout=WAIT) == "ok"
    assert fut.state.attempts == 2


def test_task_exited_pickles() -> None:
    err = exceptions.TaskExited("task 'x' called sys.exit(3)", 3)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is exceptions.TaskExited
    assert str(back) == "task 'x' called sys.exit(3)"
    assert back.code == 3


def _exit_in_process(code: int) -> None:
    sys.exit(code)


@pytest.mark.fault
@pytest.mark.timeout(60)
def test_sys_exit_in_a_process_task_fails_it_and_keeps_the_worker() -> None:
    exits_p = task(name="exits")(_exit_in_process)
    with ProcessPoolTaskRunner(max_workers=1):
        fut = exits_p.submit(3)
        fut.wait(WAIT)
        _check_exited(fut)
        assert exits_p.submit(4).exception(timeout=WAIT).code == 4  # type: ignore[union-attr]  # a TaskExited


@pytest.mark.fault
@pytest.mark.timeout(60)
@pytest.mark.allow_threads("Dask", "dask", "Thread", "TCP", "asyncio", "Profile", "IO loop")
def test_sys_exit_in_a_dask_task_fails_it() -> None:
    import distributed  # the test extra installs it: CI never skips this

    from asyncflow.contrib.dask import DaskTaskRunner

    with (
        distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        DaskTaskRunner(cluster=cluster),
    ):
        fut = exits.submit(3)
        fut.wait(30)
    _check_exited(fut)
