"""Execution policies (issue 5): retries, timeouts, cancellation, limits, streaming, hooks."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import resource
import signal
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest
from helpers import WAIT

from asyncflow import State, exceptions, flow, quote, task
from asyncflow._core import _engine
from asyncflow._core._policy import RetryPolicy
from asyncflow.task_runners import ThreadPoolTaskRunner

# ---- retries -----------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_retries_pass_through_retrying_and_count_attempts() -> None:
    seen_states: list[str] = []
    calls: list[int] = []
    holder: dict[str, Any] = {}
    submitted = threading.Event()

    def delay(attempt: int) -> float:
        assert submitted.wait(WAIT)
        seen_states.append(holder["fut"].state.name)
        return 0.0

    @task(retries=3, retry_delay_seconds=delay)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("transient")
        return "ok"

    with ThreadPoolTaskRunner(max_workers=1):
        holder["fut"] = fut = flaky.submit()
        submitted.set()
        assert fut.result(timeout=WAIT) == "ok"
    assert len(calls) == 3
    assert seen_states == ["Retrying", "Retrying"]
    assert fut.state.is_completed()
    assert fut.state.attempts == 3


@pytest.mark.timeout(10)
def test_retries_exhausted_fail_with_the_last_error_and_attempts() -> None:
    @task(retries=2)
    def always() -> None:
        raise KeyError("nope")

    with ThreadPoolTaskRunner(max_workers=1):
        fut = always.submit()
        with pytest.raises(KeyError):
            fut.result(timeout=WAIT)
    assert fut.state.is_failed()
    assert fut.state.attempts == 3


@pytest.mark.asyncio
@pytest.mark.timeout(10)
async def test_async_task_retries() -> None:
    calls = 0

    @task(retries=1)
    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("first")
        return calls

    @flow
    async def body() -> int:
        return await flaky.submit()

    assert await body() == 2


def test_retry_condition_receives_task_and_exception() -> None:
    seen: list[tuple[Any, type[BaseException]]] = []

    def only_connection_errors(tsk: Any, exc: BaseException) -> bool:
        seen.append((tsk, type(exc)))
        return isinstance(exc, ConnectionError)

    attempts = 0

    @task(retries=5, retry_condition_fn=only_connection_errors)
    def fails() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("c") if attempts == 1 else ValueError("v")

    with pytest.raises(ValueError, match="v"):
        fails()
    assert attempts == 2
    assert seen == [(fails, ConnectionError), (fails, ValueError)]


def test_retry_delays_number_list_callable() -> None:
    assert RetryPolicy(3, 2).delay_for(1) == 2.0
    listed = RetryPolicy(4, [1, 5, 10])
    assert [listed.delay_for(a) for a in (1, 2, 3, 4)] == [1.0, 5.0, 10.0, 10.0]
    assert [RetryPolicy(3, lambda a: a * 1.5).delay_for(a) for a in (1, 2)] == [1.5, 3.0]


def test_retry_jitter_is_applied_within_bounds() -> None:
    policy = RetryPolicy(3, 10.0, jitter=0.5)
    rng = random.Random(7)
    delays = [policy.delay_for(1, rng) for _ in range(200)]
    assert all(5.0 <= d <= 15.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 100  # really jittered
    assert min(delays) < 7
    assert max(delays) > 13


def test_retry_jitter_used_by_a_real_task(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    # Record the delays instead of waiting them out.
    monkeypatch.setattr(_engine, "_wait_retry_delay", lambda run, delay: slept.append(delay))

    @task(retries=3, retry_delay_seconds=1.0, retry_jitter_factor=0.9)
    def fails() -> None:
        raise OSError("x")

    with pytest.raises(OSError, match="x"):
        fails()
    assert len(slept) == 3
    assert all(0.1 <= d <= 1.9 for d in slept)
    assert len(set(slept)) == 3


# ---- timeouts ----------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.timeout(10)
async def test_async_task_timeout_cancels_the_coroutine() -> None:
    cancelled = asyncio.Event()

    @task(timeout_seconds=0.05)
    async def hangs() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @flow
    async def body() -> Any:
        fut = hangs.submit()
        await fut.wait_async()
        return quote(fut)  # a returned future would be resolved

    fut = await body()
    assert cancelled.is_set()
    assert fut.state.name == "TimedOut"
    assert fut.state.is_failed()
    with pytest.raises(exceptions.TaskTimeout):
        fut.result()
    assert isinstance(fut.exception(), TimeoutError)


@pytest.mark.asyncio
@pytest.mark.timeout(10)
async def test_async_direct_call_timeout_raises_task_timeout() -> None:
    @task(timeout_seconds=0.05)
    async def hangs() -> None:
        await asyncio.Event().wait()

    with pytest.raises(exceptions.TaskTimeout):
        await hangs()
    # the caller's own task is not left cancelled
    await asyncio.sleep(0)


@pytest.mark.timeout(10)
def test_thread_task_future_fails_at_deadline_and_cooperative_check_stops_it() -> None:
    from asyncflow import check_cancelled

    release = threading.Event()
    returned = threading.Event()  # the abandoned thread is not joined: wait for it here
    stopped: list[str] = []

    @task(timeout_seconds=0.05)
    def slow() -> str:
        assert release.wait(WAIT)
        try:
            check_cancelled()
        except exceptions.TaskTimeout:
            stopped.append("timeout seen")
            raise
        finally:
            returned.set()
        return "finished"

    with ThreadPoolTaskRunner(max_workers=1):
        fut = slow.submit()
        fut.wait(timeout=WAIT)  # returns at the deadline, while the thread still blocks
        assert fut.state.name == "TimedOut"
        with pytest.raises(exceptions.TaskTimeout, match="slow"):
            fut.result()
        release.set()
    assert returned.wait(WAIT)
    assert stopped == ["timeout seen"]
    assert fut.state.name == "TimedOut"  # the late outcome does not overwrite it


@pytest.mark.timeout(10)
def test_sync_flow_timeout_cancels_what_it_still_runs() -> None:
    release = threading.Event()

    @task
    def blocks() -> None:
        release.wait(WAIT)

    futures: list[Any] = []

    @flow(timeout_seconds=0.1, task_runner=ThreadPoolTaskRunner(max_workers=1))
    def slow_flow() -> None:
        futures.append(blocks.submit())
        futures.append(blocks.submit())  # queued behind the first
        futures[0].result()

    with pytest.raises(exceptions.TaskTimeout, match="slow_flow"):
        slow_flow()
    release.set()
    assert futures[0].state.name == "TimedOut"
    assert futures[1].state.is_cancelled()


@pytest.mark.asyncio
@pytest.mark.timeout(10)
async def test_async_flow_timeout_cancels_its_tasks() -> None:
    cancelled = asyncio.Event()

    @task
    async def hangs() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    futures: list[Any] = []

    @flow(timeout_seconds=0.1)
    async def slow_flow() -> None:
        futures.append(hangs.submit())
        await futures[0]

    with pytest.raises(exceptions.TaskTimeout):
        await slow_flow()
    assert cancelled.is_set()
    assert futures[0].state.is_cancelled()


# ---- cancellation ------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.timeout(10)
async def test_cancel_running_async_task() -> None:
    started = asyncio.Event()

    @task
    async def hangs() -> None:
        started.set()
        await asyncio.Event().wait()

    @flow
    async def body() -> Any:
        fut = hangs.submit()
        await started.wait()
        assert fut.cancel() is True
        await fut.wait_async()
        return quote(fut)  # a returned future would be resolved

    fut = await body()
    assert fut.state.is_cancelled()
    with pytest.raises(exceptions.TaskCancelled):
        fut.result()


@pytest.mark.asyncio
@pytest.mark.timeout(10)
async def test_cancelling_an_async_flow_cancels_everything_and_awaits_cleanup() -> None:
    started = asyncio.Event()
    cleaned = asyncio.Event()
    futures: list[Any] = []

    @task
    async def child() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # cleanup that itself awaits
            cleaned.set()

    @flow
    async def parent() -> None:
        futures.append(child.submit())
        await asyncio.Event().wait()

    run = asyncio.ensure_future(parent())
    await started.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert cleaned.is_set()  # awaited before the flow returned
    assert futures[0].state.is_cancelled()


@pytest.mark.timeout(10)
def test_flow_body_failure_cancels_pending_tasks() -> None:
    release = threading.Event()

    @task
    def blocks() -> None:
        release.wait(WAIT)

    futures: list[Any] = []

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def failing() -> None:
        futures.extend(blocks.submit() for _ in range(3))
        release.set()
        raise RuntimeError("body failed")

    with pytest.raises(RuntimeError, match="body failed"):
        failing()
    assert all(f.state.is_final() for f in futures)
    assert sum(f.state.is_cancelled() for f in futures) >= 2  # the queued ones


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    from asyncflow import flow, task
    from asyncflow.task_runners import ThreadPoolTaskRunner

    futures = []
    started = threading.Barrier(3)

    @task
    def sleeper():
        started.wait()
        time.sleep(60)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def main():
        futures.extend(sleeper.submit() for _ in range(3))
        started.wait()
        print("ready", flush=True)
        futures[0].result()

    try:
        main()
    except KeyboardInterrupt:
        print("states", sorted(f.state.name for f in futures), flush=True)
        raise
    """
)


@pytest.mark.timeout(30)
def test_ctrl_c_stops_a_sync_flow_quickly(tmp_path: Any) -> None:
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    try:  # its tasks sleep 60 s: waiting for them would fail at this timeout
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in err
    assert "states ['Cancelled', 'Cancelled', 'Cancelled']" in out


# ---- concurrency limits -----------------------------------------------------------------


@pytest.mark.timeout(10)
def test_max_concurrency_bounds_runs_of_a_task() -> None:
    lock = threading.Lock()
    active = 0
    peak = 0
    two_running = threading.Event()
    release = threading.Event()

    @task(max_concurrency=2)
    def limited(i: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            if active == 2:
                two_running.set()
        release.wait(WAIT)
        with lock:
            active -= 1
        return i

    with ThreadPoolTaskRunner(max_workers=8):
        futures = limited.map(range(8))
        assert two_running.wait(WAIT)
        states = [f.state.name for f in futures]
        assert states.count("Running") == 2
        assert states.count("Pending") == 6
        release.set()
        assert futures.result(timeout=WAIT) == list(range(8))
    assert peak == 2


@pytest.mark.timeout(10)
def test_with_options_max_concurrency_has_its_own_limit_and_cancel_while_parked() -> None:
    release = threading.Event()

    @task
    def work(i: int) -> int:
        release.wait(WAIT)
        return i

    one_at_a_time = work.with_options(max_concurrency=1)
    with ThreadPoolTaskRunner(max_workers=4):
        futures = one_at_a_time.map(range(3))
        assert futures[2].cancel() is True  # parked, not started
        release.set()
        assert futures[0].result(timeout=WAIT) == 0
        assert futures[1].result(timeout=WAIT) == 1
    assert futures[2].state.is_cancelled()


@pytest.mark.timeout(10)
def test_map_max_concurrency_bounds_that_map_only() -> None:
    gate = threading.Barrier(3)  # two runs of the map and the test
    release = threading.Event()

    @task
    def work(i: int) -> int:
        if i < 2:
            gate.wait(WAIT)
        release.wait(WAIT)
        return i

    @task
    def takes_limit(max_concurrency: int) -> int:
        return max_concurrency

    with ThreadPoolTaskRunner(max_workers=8):
        futures = work.map(range(6), max_concurrency=2)
        gate.wait(WAIT)  # runs 0 and 1 are running...
        assert [f.state.name for f in futures].count("Running") == 2  # ...and only they
        other = work.submit(9)  # the task itself is not limited
        release.set()
        assert futures.result(timeout=WAIT) == list(range(6))
        assert other.result(timeout=WAIT) == 9
        # A function with a parameter of that name gets the value mapped as usual.
        assert takes_limit.map(max_concurrency=[1, 2]).result(timeout=WAIT) == [1, 2]
    with pytest.raises(ValueError, match="max_concurrency"):
        work.map(range(2), max_concurrency=0)


# ---- streaming ---------------------------------------------------------------------------


@task
def square(x: int) -> int:
    return x * x


@pytest.mark.timeout(20)
def test_map_iter_ordered_and_lazy() -> None:
    consumed = 0

    def source() -> Any:
        nonlocal consumed
        for i in range(50):
            consumed += 1
            yield i

    out = []
    with ThreadPoolTaskRunner(max_workers=4):
        for i, value in enumerate(square.map_iter(source(), max_concurrency=5)):
            assert consumed <= i + 1 + 5  # never more than the window ahead
            out.append(value)
    assert out == [i * i for i in range(50)]


@pytest.mark.timeout(20)
def test_map_iter_unordered_and_static_kwargs() -> None:
    @task
    def add(x: int, y: int, *, offset: int = 0) -> int:
        return x + y + offset

    with ThreadPoolTaskRunner(max_workers=4):
        got = set(add.map_iter(range(20), range(20), offset=100, ordered=False))
    assert got == {2 * i + 100 for i in range(20)}


@pytest.mark.timeout(20)
def test_map_iter_failure_raises_and_cancels_the_rest() -> None:
    release = threading.Event()
    submitted: list[int] = []

    @task
    def maybe_fail(i: int) -> int:
        submitted.append(i)
        if i == 0:
            raise ValueError("first one fails")
        release.wait(WAIT)
        return i

    with ThreadPoolTaskRunner(max_workers=1):
        with pytest.raises(ValueError, match="first one fails"):
            for _ in maybe_fail.map_iter(range(1000), max_concurrency=4):
                pass
        release.set()
    assert len(submitted) <= 5  # nothing beyond the window ran


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_map_iter_async_for() -> None:
    @task
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    @flow
    async def body() -> list[int]:
        return [v async for v in double.map_iter(range(100), max_concurrency=10)]

    assert await body() == [2 * i for i in range(100)]


@pytest.mark.timeout(300)  # slow under coverage's thread tracing on a loaded machine
def test_map_iter_many_elements_in_bounded_memory() -> None:
    N = 200_000

    # 200k runs: unbounded, their futures alone would pass the 50 MB bound several
    # times over (the 1M-element figure is benchmarks' `stream` scenario).
    @task
    async def inc(x: int) -> int:
        return x + 1

    @flow
    async def body() -> int:
        total = 0
        async for value in inc.map_iter(range(N), max_concurrency=100):
            total += value
        return total

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, the peak so far
    total = asyncio.run(body())
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert total == sum(range(1, N + 1))
    assert grown_kib < 50 * 1024, f"peak RSS grew by {grown_kib} KiB"


def test_map_iter_bad_input() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        square.map_iter(range(3), max_concurrency=0)
    with pytest.raises(TypeError, match="iterable"):
        square.map_iter(3)
    with pytest.raises(TypeError, match="at least one"):
        square.map_iter()


# ---- hooks -------------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_task_hooks_get_task_and_final_state(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[tuple[str, Any, str]] = []

    def on_ok(t: Any, s: State) -> None:
        calls.append(("ok", t, s.name))

    def on_bad(t: Any, s: State) -> None:
        calls.append(("bad", t, s.name))

    def broken_hook(t: Any, s: State) -> None:
        raise RuntimeError("hook bug")

    @task(on_completion=[on_ok, broken_hook], on_failure=[on_bad])
    def maybe(fail: bool) -> int:
        if fail:
            raise ValueError("x")
        return 1

    with caplog.at_level(logging.ERROR, logger="asyncflow"):
        assert maybe(False) == 1
        with pytest.raises(ValueError, match="x"):
            maybe(True)
        with ThreadPoolTaskRunner(max_workers=1):
            assert maybe.submit(False).result(timeout=WAIT) == 1
    assert calls == [
        ("ok", maybe, "Completed"),
        ("bad", maybe, "Failed"),
        ("ok", maybe, "Completed"),
    ]
    assert "hook bug" in caplog.text


def test_flow_hooks() -> None:
    calls: list[tuple[str, str]] = []

    @flow(
        on_completion=[lambda f, s: calls.append((f.name, s.name))],
        on_failure=[lambda f, s: calls.append((f.name, s.name))],
    )
    def sometimes(fail: bool) -> int:
        if fail:
            raise ValueError("no")
        return 1

    assert sometimes(False) == 1
    with pytest.raises(ValueError, match="no"):
        sometimes(True)
    assert calls == [("sometimes", "Completed"), ("sometimes", "Failed")]


# ---- bad input, at decoration time -------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"retries": -1}, ValueError, "retries"),
        ({"retries": "3"}, TypeError, "retries"),
        ({"retry_delay_seconds": -1}, ValueError, "retry_delay_seconds"),
        ({"retry_delay_seconds": "soon"}, TypeError, "retry_delay_seconds"),
        ({"retry_delay_seconds": [1, -2]}, ValueError, "retry_delay_seconds"),
        ({"retry_jitter_factor": -0.5}, ValueError, "retry_jitter_factor"),
        ({"retry_condition_fn": 3}, TypeError, "retry_condition_fn"),
        ({"timeout_seconds": -1}, ValueError, "timeout_seconds"),
        ({"timeout_seconds": "1s"}, TypeError, "timeout_seconds"),
        ({"max_concurrency": 0}, ValueError, "max_concurrency"),
        ({"on_completion": [print, 3]}, TypeError, "on_completion"),
        ({"on_failure": "hook"}, TypeError, "on_failure"),
        ({"bogus": 1}, TypeError, "bogus"),
    ],
)
def test_bad_task_options_fail_at_decoration(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        task(**options)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"timeout_seconds": -1}, ValueError),
        ({"on_failure": [1]}, TypeError),
        ({"task_runner": "threads"}, TypeError),
    ],
)
def test_bad_flow_options_fail_at_decoration(
    options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        flow(**options)
