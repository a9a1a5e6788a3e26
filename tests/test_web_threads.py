"""asyncflow.web in-process: the engine's lifecycle and shutdown policy, flow scopes over
the shared runner, the ASGI middleware; sync servers (32 threads at once) and
notebooks (a sync flow called inside a running loop)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from asyncflow import check_cancelled, flow, task
from asyncflow._runners._current import default_runner
from asyncflow.exceptions import TaskCancelled
from asyncflow.states import StateType
from asyncflow.task_runners import ThreadPoolTaskRunner
from asyncflow.web import Engine, SharedTaskRunner, ShutdownErrorMiddleware, engine


@task
def double(x: int) -> int:
    return 2 * x


@task
async def adouble(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


@task
def thread_name() -> str:
    return threading.current_thread().name


@task
def wait_gate(gate: threading.Event) -> str:
    """Runs until `gate` is set, or until its run is cancelled (check_cancelled)."""
    while not gate.wait(0.01):
        check_cancelled()
    return "opened"


@task
async def forever() -> None:
    await asyncio.Event().wait()


# ---- the engine ------------------------------------------------------------------------


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="grace_seconds"):
        engine(grace_seconds=-1)
    with pytest.raises(TypeError, match="grace_seconds"):
        engine(grace_seconds="5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not both"):
        engine(max_workers=2, task_runner=ThreadPoolTaskRunner(2))
    with pytest.raises(TypeError, match="SharedTaskRunner"):
        engine(task_runner=SharedTaskRunner())
    with pytest.raises(TypeError, match="TaskRunner instance"):
        engine(runners={"cpu": object()})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="max_workers"):
        engine(max_workers=0)


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_engine_is_the_default_while_it_runs() -> None:
    before = default_runner()
    eng = engine(max_workers=2, grace_seconds=1)
    assert not eng.running
    async with eng:
        assert default_runner() is eng.runner
        assert await thread_name.submit() == "asyncflow-web-1"
        assert await adouble.submit(4) == 8  # async runs on this (the server's) loop
        with pytest.raises(RuntimeError, match="already running"):
            await eng.__aenter__()
    assert default_runner() is before
    assert not eng.running
    with pytest.raises(RuntimeError, match="not running"):
        _ = eng.runner
    async with eng:  # an engine can be started again (a fresh runner)
        assert await double.submit(5) == 10
    assert [t.name for t in threading.enumerate() if t.name.startswith("asyncflow-web")] == []


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_runs_finishing_within_the_grace_period_complete() -> None:
    gate = threading.Event()
    eng = engine(max_workers=2, grace_seconds=30)
    await eng.__aenter__()
    fut = wait_gate.submit(gate)
    exiting = asyncio.ensure_future(eng.__aexit__(None, None, None))
    await asyncio.sleep(0)  # let the exit start waiting
    assert eng.closing
    assert not exiting.done()
    gate.set()
    await asyncio.wait_for(exiting, 10)
    assert fut.state.is_completed()
    assert fut.result() == "opened"


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_after_the_grace_period_the_rest_is_cancelled() -> None:
    gate = threading.Event()  # never set
    async with engine(max_workers=1, grace_seconds=0.2) as eng:
        running = wait_gate.submit(gate)  # holds the only worker
        queued = double.submit(1)  # never starts
        on_loop = forever.submit()
        flow_started = asyncio.Event()

        @flow(task_runner=SharedTaskRunner())
        async def request_flow() -> Any:
            fut = wait_gate.submit(gate)
            flow_started.set()
            return await fut

        request = asyncio.ensure_future(request_flow())
        await flow_started.wait()
        assert eng.in_flight() == 4
    for fut in (running, queued, on_loop):
        assert fut.state.type is StateType.CANCELLED, fut.state
    assert "grace period of 0.2 s ran out" in (running.state.message or "")
    with pytest.raises(TaskCancelled):
        await request  # the request's flow gets a clear error, not a hang
    names = [t.name for t in threading.enumerate() if t.name.startswith("asyncflow-web")]
    assert names == []  # the cancelled sync runs saw check_cancelled() and ended


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_flow_scopes_share_the_pool_but_not_their_structure() -> None:
    gate = threading.Event()

    @flow(task_runner=SharedTaskRunner())
    async def failing() -> None:
        wait_gate.submit(gate)  # queued behind `other`, then cancelled with the flow
        raise ValueError("boom")

    async with engine(max_workers=1, grace_seconds=5) as eng:
        other = wait_gate.submit(gate)  # outside the flow: not the flow's to cancel
        with pytest.raises(ValueError, match="boom"):
            await failing()
        assert not other.done()
        gate.set()
        assert await other == "opened"

        @flow(task_runner=SharedTaskRunner())
        async def where() -> str:
            return await thread_name.submit()

        assert await where() == "asyncflow-web-1"  # the engine's pool, not a new one

        @flow  # no task_runner: while an engine runs, the same as SharedTaskRunner()
        def plain() -> str:
            return thread_name.submit().result()

        assert await asyncio.to_thread(plain) == "asyncflow-web-1"
        assert eng.in_flight() == 0


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_named_runners() -> None:
    @flow(task_runner=SharedTaskRunner("cpu"))
    async def on_cpu() -> str:
        return await thread_name.submit()

    with pytest.raises(RuntimeError, match="no running asyncflow engine has a runner named"):
        await on_cpu()
    eng = engine(max_workers=2, runners={"cpu": ThreadPoolTaskRunner(1)})
    async with eng:
        assert await on_cpu() == "asyncflow-web-cpu-1"
        with pytest.raises(RuntimeError, match="another running asyncflow engine"):
            await engine(runners={"cpu": ThreadPoolTaskRunner(1)}).__aenter__()
    with pytest.raises(RuntimeError, match="no running asyncflow engine"):
        await on_cpu()


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_starlette_style_lifespan() -> None:
    eng = engine(max_workers=2)
    async with eng(object()) as state:  # what Starlette does with lifespan=eng
        assert state is None
        assert isinstance(eng, Engine)
        assert default_runner() is eng.runner
    assert not eng.running


# ---- ASGI middleware -------------------------------------------------------------------


async def _call(app: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await ShutdownErrorMiddleware(app)({"type": "http"}, receive, send)
    return sent


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_middleware_answers_503_to_cancelled_requests() -> None:
    async def cancelled_app(scope: Any, receive: Any, send: Any) -> None:
        raise asyncio.CancelledError

    async def failing_app(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("not ours")

    async def ok_app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sent: list[dict[str, Any]] = []

    async def collect(message: Any) -> None:
        sent.append(message)

    with pytest.raises(asyncio.CancelledError):
        await ShutdownErrorMiddleware(cancelled_app)({"type": "http"}, None, collect)  # type: ignore[arg-type]
    assert sent[0]["status"] == 503
    assert b"shut down" in sent[1]["body"]
    with pytest.raises(ValueError, match="not ours"):
        await _call(failing_app)
    assert [m.get("status") for m in await _call(ok_app)] == [200, None]


# ---- sync servers: many threads at once ------------------------------------------------


@flow
def sync_pipeline(x: int) -> list[int]:
    return double.map([x, x + 1, x + 2])


@flow(task_runner=SharedTaskRunner())
def shared_pipeline(x: int) -> int:
    return double.submit(x).result() + adouble.submit(x).result()


@pytest.mark.timeout(30)
def test_32_threads_call_sync_flows_and_submit_at_once() -> None:
    n = 32
    barrier = threading.Barrier(n)
    results: dict[int, tuple[Any, ...]] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = (
                sync_pipeline(i),
                double.submit(i).result(timeout=10),
                shared_pipeline(i),
                double.map([i, i]).result(timeout=10),
            )
        except BaseException as exc:  # reported below, with the thread's index
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,), name=f"wsgi-{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not errors, errors
    assert results == {
        i: ([2 * i, 2 * i + 2, 2 * i + 4], 2 * i, 4 * i, [2 * i, 2 * i]) for i in range(n)
    }


# ---- notebooks: a sync flow called where a loop is running -----------------------------


@flow
def notebook_flow(x: int) -> list[int]:
    a = double.submit(x)
    b = adouble.submit(a)  # async task: on the engine loop, not this (blocked) one
    return [a.result(), b.result()]


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_sync_flow_called_inside_a_running_loop() -> None:
    asyncio.get_running_loop()  # as in Jupyter: this thread runs a loop
    assert notebook_flow(3) == [6, 12]
    assert shared_pipeline(5) == 20


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_sync_flow_inside_a_running_loop_with_an_engine() -> None:
    async with engine(max_workers=2, grace_seconds=1):
        assert notebook_flow(4) == [8, 16]
        assert shared_pipeline(2) == 8  # sync runs on the engine's pool
