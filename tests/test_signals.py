"""SIGTERM in scripts is handled like Ctrl-C (issue 11, defect 9). Every case runs in a
subprocess with a hard timeout: a regression fails instead of hanging the suite."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest

SCRIPT_HEAD = textwrap.dedent(
    """
    import asyncio, atexit, os, signal, sys, threading, time
    from asyncflow import flow, task
    from asyncflow.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
    from asyncflow._runners import _process_pool

    # SIGTERM must kill busy process workers, not stop them gracefully: make a graceful
    # stop wait for good, so that it fails the test (at its timeout) instead of exiting
    # a few seconds late.
    _process_pool.STOP_GRACE_SECONDS = 600

    futures = []
    atexit.register(
        lambda: print("atexit", sorted(f.state.name for f in futures), flush=True)
    )

    @task
    def thread_task():
        os.write(1, b"started\\n")  # one write: lines from threads never mix
        threading.Event().wait()  # never returns on its own

    @task
    async def async_task():
        os.write(1, b"started\\n")  # one write: lines from threads never mix
        await asyncio.Event().wait()

    def process_task():
        os.write(1, b"started\\n")  # one write: lines from threads never mix
        time.sleep(600)
    """
)

SCRIPTS = {
    # a sync flow with thread, async and process tasks (nested flows own the process pool)
    "sync-flow": """
        @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
        def in_processes():
            futures.append(task(process_task).submit())
            futures[-1].result()

        @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
        def main():
            futures.append(thread_task.submit())
            futures.append(async_task.submit())
            futures.append(thread_task.submit())  # queued behind the first (1 worker)
            in_processes()

        try:
            main()
        finally:
            print("finally", flush=True)
        """,
    "with": """
        try:
            with ThreadPoolTaskRunner(max_workers=2):
                futures.append(thread_task.submit())
                futures.append(async_task.submit())
        finally:
            print("finally", flush=True)
        """,
    "async-flow": """
        @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
        async def main():
            futures.append(thread_task.submit())
            futures.append(async_task.submit())
            async with ProcessPoolTaskRunner(max_workers=1) as processes:
                futures.append(processes.submit(task(process_task), {}))
                await futures[-1]

        try:
            asyncio.run(main())
        finally:
            print("finally", flush=True)
        """,
    "default-runner": """
        try:
            futures.append(thread_task.submit())
            futures.append(async_task.submit())
            futures[0].result()
        finally:
            print("finally", flush=True)
        """,
}
STARTED = {"sync-flow": 3, "with": 2, "async-flow": 3, "default-runner": 2}


def _run_and_terminate(
    tmp_path: Any, body: str, started: int, signum: int = signal.SIGTERM
) -> tuple[int, str, str]:
    script = tmp_path / "script.py"
    # Guarded: process workers import the script as their main module (forkserver or
    # spawn), and unguarded they would run the whole flow again instead of the task.
    guarded = 'if __name__ == "__main__":\n' + textwrap.indent(textwrap.dedent(body), "    ")
    script.write_text(SCRIPT_HEAD + guarded)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its workers too can be killed if it hangs
    )
    try:
        assert proc.stdout is not None
        for _ in range(started):  # every task is running (the gate)
            assert proc.stdout.readline().strip() == "started"
        proc.send_signal(signum)
        # The tasks never end on their own: waiting for them would hang until this timeout.
        out, err = proc.communicate(timeout=20)
        return proc.returncode, out, err
    finally:
        if proc.returncode is None:  # it hung (or the test failed first)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the script and any worker it left
            proc.communicate()


@pytest.mark.fault
@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", list(SCRIPTS))
def test_sigterm_unwinds_a_script_like_ctrl_c(tmp_path: Any, mode: str) -> None:
    code, out, err = _run_and_terminate(tmp_path, SCRIPTS[mode], STARTED[mode])
    assert code == 143, (code, err)  # 128 + SIGTERM: "terminated", after cleanup
    lines = out.splitlines()
    assert "finally" in lines, out
    states = [line for line in lines if line.startswith("atexit")]
    assert len(states) == 1, out
    names = eval(states[0].removeprefix("atexit "))  # the list the script printed
    assert names, out
    assert all(name == "Cancelled" for name in names), names


@pytest.mark.fault
@pytest.mark.timeout(60)
def test_ctrl_c_does_not_wait_for_the_default_runner_at_exit(tmp_path: Any) -> None:
    body = SCRIPTS["default-runner"]
    code, out, err = _run_and_terminate(tmp_path, body, 2, signal.SIGINT)
    assert code == -signal.SIGINT, (code, err)  # Python's own exit for an uncaught Ctrl-C
    assert "KeyboardInterrupt" in err
    assert "atexit ['Cancelled', 'Cancelled']" in out.splitlines()


OWN_HANDLER = textwrap.dedent(
    """
    import os, signal, threading
    from asyncflow import flow, task
    from asyncflow.task_runners import ThreadPoolTaskRunner

    seen = threading.Event()

    def mine(signum, frame):
        seen.set()

    signal.signal(signal.SIGTERM, mine)

    @task
    def double(x):
        return 2 * x

    @flow
    def main():
        assert signal.getsignal(signal.SIGTERM) is mine
        os.kill(os.getpid(), signal.SIGTERM)  # the script's handler runs, nothing ends
        return double.submit(2).result()

    print(main(), seen.is_set(), double.submit(3).result(), flush=True)
    assert signal.getsignal(signal.SIGTERM) is mine
    print("kept", flush=True)
    """
)


@pytest.mark.timeout(30)
def test_a_script_s_own_sigterm_handler_is_kept(tmp_path: Any) -> None:
    script = tmp_path / "own.py"
    script.write_text(OWN_HANDLER)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=20
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["4 True 6", "kept"]


SCOPES = textwrap.dedent(
    """
    import signal
    from asyncflow import flow, task
    from asyncflow.task_runners import ThreadPoolTaskRunner

    def handler():
        h = signal.getsignal(signal.SIGTERM)
        return "default" if h is signal.SIG_DFL else getattr(h, "__name__", repr(h))

    @task
    def one():
        return 1

    @flow
    def main():
        with ThreadPoolTaskRunner():  # nested scopes: released by the outermost only
            inner = handler()
        return inner, handler()

    print(handler(), *main(), handler(), flush=True)
    one.submit().result()  # the default runner keeps its claim until exit
    print(handler(), flush=True)
    """
)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        (None, ["default _on_sigterm _on_sigterm default", "_on_sigterm"]),
        ("0", ["default default default default", "default"]),
    ],
)
def test_handler_installed_per_scope_restored_and_opt_out(
    tmp_path: Any, setting: str | None, expected: list[str]
) -> None:
    script = tmp_path / "scopes.py"
    script.write_text(SCOPES)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    env.pop("ASYNCFLOW_HANDLE_SIGTERM", None)
    if setting is not None:
        env["ASYNCFLOW_HANDLE_SIGTERM"] = setting
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=20
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == expected


def test_bad_sigterm_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from asyncflow.settings import get_settings

    monkeypatch.setenv("ASYNCFLOW_HANDLE_SIGTERM", "maybe")
    with pytest.raises(ValueError, match=r"ASYNCFLOW_HANDLE_SIGTERM.*'maybe'"):
        get_settings()
    monkeypatch.setenv("ASYNCFLOW_HANDLE_SIGTERM", "off")
    assert get_settings().handle_sigterm is False


SIGNAL_IN_ANOTHER_THREAD = textwrap.dedent(
    """
    import signal, sys, threading
    from asyncflow import task
    from asyncflow.task_runners import ThreadPoolTaskRunner

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted()

    signal.signal(signal.SIGUSR1, handler)
    gate = threading.Event()

    @task
    def blocked():
        gate.wait(30)

    def deliver_here():  # the C handler runs in this thread, not in the main one
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)

    with ThreadPoolTaskRunner(max_workers=1):
        future = blocked.submit()
        for wait in (lambda: future.result(), lambda: future.result(timeout=30)):
            threading.Timer(0.2, deliver_here).start()
            try:
                wait()
            except Interrupted:
                print("interrupted", flush=True)
        threading.Timer(0.2, deliver_here).start()
        try:
            with ThreadPoolTaskRunner(max_workers=1):  # its exit waits for the run
                blocked.submit()
        except Interrupted:
            print("interrupted", flush=True)
        gate.set()
    """
)


@pytest.mark.timeout(30)
def test_a_signal_handled_by_another_thread_still_interrupts_the_main_thread(
    tmp_path: Any,
) -> None:
    # The kernel may hand Ctrl-C or SIGTERM to any thread; the main thread, blocked in
    # `.result()` or a runner's exit, must still run the handler (it hung before).
    script = tmp_path / "other_thread.py"
    script.write_text(SIGNAL_IN_ANOTHER_THREAD)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=20
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["interrupted"] * 3
