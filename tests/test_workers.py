"""Task workers: submitting (`.delay()`, `apply_async`, `WorkerTaskRunner`), working
(`TaskWorker`: claims by key, leases, shutdown), run ids that outlive their submitter,
and the security rules (sealed messages and results, the payload limit).

Workers here run in this process on a `memory://` broker, or as processes on a SQLite
file (`workers_support`); every wait is bounded (gates, `result(timeout=...)`)."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import workers_tasks as wt
from helpers import WAIT, FileGate, Tally
from workers_support import (
    TESTS,
    InProcessWorkers,
    SubprocessWorkers,
    ThreadWorker,
    peek,
    start_worker_process,
    stop_worker_process,
    worker_env,
)

import asyncflow
from asyncflow import exceptions, task, task_worker
from asyncflow._broker import RunStatus, broker_secret, open_broker, sign
from asyncflow._taskworkers import TaskWorker, WorkerTaskRunner
from asyncflow.task_runners import WorkerTaskRunner as PublicWorkerTaskRunner

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def memory_url() -> str:
    return f"memory://test-{uuid.uuid4().hex}"


@pytest.fixture
def default_broker(memory_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """`.delay()` outside any runner goes to ASYNCFLOW_BROKER_URL: a fresh memory broker."""
    from asyncflow._taskworkers import _runner

    monkeypatch.setenv("ASYNCFLOW_BROKER_URL", memory_url)
    monkeypatch.setattr(_runner, "_default_runners", {})
    return memory_url


# ---- submitting ----------------------------------------------------------------------------


def test_public_names() -> None:
    assert PublicWorkerTaskRunner is WorkerTaskRunner
    assert asyncflow.serve is task_worker.serve
    assert asyncflow.aserve is task_worker.aserve


def test_delay_and_apply_async_from_outside_any_flow(default_broker: str, tmp_path: Path) -> None:
    tally, gate = Tally(tmp_path / "order"), FileGate(tmp_path / "gate")
    with ThreadWorker(default_broker, wt.noop, wt.numbered, wt.hold):
        first = wt.hold.delay(tally, gate)
        after = wt.numbered.apply_async((7,), {"tally": tally}, wait_for=[first])
        assert after.state.is_pending()  # it waits for `first`, which waits for the gate
        gate.open()
        assert after.result(timeout=WAIT) == 7
        assert first.result(timeout=WAIT) == os.getpid()  # an in-process worker
        assert wt.noop.delay(i=3).result(timeout=WAIT) == 3
    assert tally.lines() == [str(os.getpid()), "7"]


@pytest.mark.asyncio
async def test_delay_in_async_code(default_broker: str) -> None:
    with ThreadWorker(default_broker, wt.anoop, wt.noop):
        assert await wt.anoop.delay(5) == 5
        assert await asyncio.gather(*(wt.noop.delay(i) for i in range(5))) == list(range(5))


def test_tasks_that_workers_cannot_import_fail_at_submit(memory_url: str) -> None:
    @task
    def local(x: int) -> int:
        return x

    with WorkerTaskRunner(memory_url):
        with pytest.raises(exceptions.SerializationError, match=r"'local'.*inside a function"):
            local.submit(1)
        with pytest.raises(exceptions.SerializationError, match=r"'local'"):
            local.map([1, 2])
    main_task = task(lambda: 1)
    main_task.fn.__module__ = "__main__"
    with pytest.raises(exceptions.SerializationError, match=r"__main__"):
        main_task.apply_async()


def test_a_message_for_a_task_no_worker_serves_waits_for_one_that_does(memory_url: str) -> None:
    with ThreadWorker(memory_url, wt.noop), WorkerTaskRunner(memory_url) as runner:
        fut = wt.unrelated.submit("mine")
        assert wt.noop.submit(1).result(timeout=WAIT) == 1  # the worker is up and claiming
        broker = open_broker(memory_url)  # the process's one memory broker of that name
        assert broker.status(task_worker.run_id(fut)) is RunStatus.QUEUED
        with ThreadWorker(memory_url, wt.unrelated):
            assert fut.result(timeout=WAIT) == "mine"
        assert runner.started


def test_retries_and_timeouts_apply_once_on_the_worker(memory_url: str, tmp_path: Path) -> None:
    from conformance import tasks as ct

    tally = Tally(tmp_path / "calls")
    flaky = ct.fail_until.with_options(retries=2, retry_delay_seconds=0.01)
    slow = wt.asleep_then.with_options(timeout_seconds=0.2)
    with InProcessWorkers(2) as runner:
        fut = flaky.submit(tally, 3)
        assert fut.result(timeout=WAIT) == 3
        timed = slow.submit(5.0, "late")
        with pytest.raises(exceptions.TaskTimeout, match="'asleep_then'"):
            timed.result(timeout=WAIT)
        assert runner.started
    assert (fut.state.name, fut.state.attempts) == ("Completed", 3)
    assert len(tally) == 3  # retried on the worker only, not once more here
    assert timed.state.name == "TimedOut"


def test_cancel_a_queued_run_cancels_it_in_the_broker(memory_url: str) -> None:
    with WorkerTaskRunner(memory_url):  # no worker: it stays queued
        fut = wt.noop.submit(1)
        rid = task_worker.run_id(fut)
        assert peek(memory_url, "status", rid) is RunStatus.QUEUED
        assert fut.cancel() is True
        assert fut.state.is_cancelled()
        assert peek(memory_url, "status", rid) is RunStatus.CANCELLED


def test_result_without_a_timeout_waits_as_long_as_the_run_takes(memory_url: str) -> None:
    with InProcessWorkers(1) as runner:
        fut = wt.sleep_then.submit(1.5, "slow")  # longer than a lease and many polls
        assert fut.result() == "slow"
        assert runner.started


def test_a_process_keeps_no_broker_file_open_once_done(tmp_path: Path) -> None:
    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_files()
    for i in range(5):
        url = f"sqlite:///{tmp_path}/broker-{i}.db"
        with WorkerTaskRunner(url):
            fut = wt.noop.submit(i)  # no worker: it is cancelled at once, still queued
            assert fut.cancel()
        rebuilt = task_worker.future(task_worker.run_id(fut), broker=url)
        assert rebuilt.state.is_cancelled()
    _wait_until(lambda: open_files() <= before)  # the watcher thread ends, then closes


# ---- futures from run ids --------------------------------------------------------------


SUBMITTER = """
import sys, workers_tasks
from asyncflow import task_worker
fut = workers_tasks.noop.delay(int(sys.argv[1]))
print(task_worker.run_id(fut), flush=True)
"""


def test_a_future_rebuilt_from_its_run_id_in_another_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/broker.db"
    env = {**worker_env(), "ASYNCFLOW_BROKER_URL": url}
    submitted = subprocess.run(
        [sys.executable, "-c", SUBMITTER, "41"],
        cwd=TESTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    rid = submitted.stdout.strip()  # the submitter has exited; its run waits in the broker
    fut = task_worker.future(rid, broker=url)
    assert not fut.done()
    worker = start_worker_process(url, 1, "workers_tasks")
    try:
        assert fut.result(timeout=WAIT) == 41
        again = PublicWorkerTaskRunner(broker=url).future(rid)  # any number of times
        assert again.result(timeout=WAIT) == 41
    finally:
        assert stop_worker_process(worker) == 0
    with pytest.raises(ValueError, match="no run 'nope'"):
        task_worker.future("nope", broker=url)
    with pytest.raises(ValueError, match="not sent to task workers"):
        task_worker.run_id(asyncflow.task(wt.noop.fn).submit(1))


def test_many_futures_of_one_run_and_a_final_run_rebuilt(memory_url: str) -> None:
    with WorkerTaskRunner(memory_url):  # no worker yet: the run waits in the broker
        fut = wt.noop.submit(3)
        rid = task_worker.run_id(fut)
        a, b = (task_worker.future(rid, broker=memory_url) for _ in range(2))
        assert not a.done()
        with ThreadWorker(memory_url, wt.noop):
            assert [f.result(timeout=WAIT) for f in (fut, a, b)] == [3, 3, 3]
    final = task_worker.future(rid, broker=memory_url)
    assert final.done()  # read from the broker at once: no wait for a watcher
    assert final.result(timeout=0) == 3


@pytest.mark.asyncio
async def test_aserve_on_the_callers_loop_stops_when_cancelled(memory_url: str) -> None:
    serving = asyncio.ensure_future(asyncflow.aserve(wt.anoop, wt.noop, broker=memory_url))
    async with WorkerTaskRunner(memory_url):
        assert await wt.anoop.submit(4) == 4  # on the worker's loop: this one
        assert await wt.noop.submit(5) == 5  # on one of its threads
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving


def test_bad_settings_fail_early(memory_url: str) -> None:
    with pytest.raises(ValueError, match="redis"), WorkerTaskRunner("redis://localhost"):
        pass
    with pytest.raises(TypeError, match="broker must be a URL"):
        WorkerTaskRunner(broker=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_deliveries"):
        WorkerTaskRunner(memory_url, max_deliveries=0)
    with pytest.raises(ValueError, match=r"module:qualname"):
        TaskWorker(["nope"], memory_url)
    with pytest.raises(ValueError, match="is not a task"):
        TaskWorker(["workers_tasks:WAIT"], memory_url)
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        TaskWorker(["no_such_module:f"], memory_url)


# ---- the worker ----------------------------------------------------------------------------


def test_a_long_run_keeps_its_lease(tmp_path: Path) -> None:
    tally = Tally(tmp_path / "calls")
    with SubprocessWorkers(2, processes=2) as runner:  # lease 1 s; the run takes 3.5 s
        assert wt.hold_for.submit(3.5, tally).result(timeout=WAIT) > 0
        assert runner.restarts == 0
    assert len(tally) == 1  # never handed to the second worker


@pytest.mark.parametrize("grace", [WAIT, 0.2])
def test_sigterm_finishes_or_hands_back_then_exits_zero(tmp_path: Path, grace: float) -> None:
    url = f"sqlite:///{tmp_path}/broker.db"
    tally, release = Tally(tmp_path / "calls"), FileGate(tmp_path / "release")
    worker = start_worker_process(url, 1, "workers_tasks", grace=grace)
    try:
        with WorkerTaskRunner(url) as runner:
            fut = wt.hold.submit(tally, release)
            queued = wt.noop.submit(2)
            _wait_until(lambda: len(tally) == 1)
            rid = task_worker.run_id(fut)
            worker.send_signal(signal.SIGTERM)
            first = worker.pid
            if grace > 1:  # it finishes what it holds and takes nothing more
                release.open()
                assert worker.wait(WAIT) == 0
                assert fut.result(timeout=WAIT) == first
                assert peek(url, "status", task_worker.run_id(queued)) is RunStatus.QUEUED
            else:  # handed back, its delivery not counted: the next worker takes it
                assert worker.wait(WAIT) == 0
                assert peek(url, "status", rid) is RunStatus.QUEUED
                release.open()
            worker = start_worker_process(url, 1, "workers_tasks")
            assert queued.result(timeout=WAIT) == 2
            assert fut.result(timeout=WAIT) == (first if grace > 1 else worker.pid)
            assert runner.started
    finally:
        assert stop_worker_process(worker) == 0


def test_cancelling_a_running_async_run_stops_it_on_the_worker(tmp_path: Path) -> None:
    tally, release = Tally(tmp_path / "calls"), FileGate(tmp_path / "release")
    with SubprocessWorkers(1) as runner:
        fut = wt.ahold.submit(tally, release)
        _wait_until(lambda: fut.state.is_running())
        assert fut.cancel() is True
        fut.wait(WAIT)
        assert fut.state.is_cancelled()
        rid = task_worker.run_id(fut)
        outcome = peek(runner.broker_url, "outcomes", [rid])
        assert [o.status for o in outcome] == [RunStatus.DONE]  # the worker's Cancelled
        assert wt.noop.submit(1).result(timeout=WAIT) == 1


# ---- security ------------------------------------------------------------------------------


class _CreatesAFile:
    """Unpickling this creates `path`: the proof that something was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.path, "w"))


def test_a_tampered_message_is_dead_lettered_and_never_unpickled(
    memory_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    proof = tmp_path / "unpickled"
    data = pickle.dumps(_CreatesAFile(proof))
    broker = open_broker(memory_url)  # the process's one memory broker of that name
    forged = sign(b"not the secret", data, context=b"forged")
    broker.enqueue("forged", "workers_tasks:noop", forged, max_deliveries=3)
    good = sign(broker_secret(broker), data, context=b"altered")
    altered = good[:-1] + bytes([good[-1] ^ 1])
    broker.enqueue("altered", "workers_tasks:noop", altered, max_deliveries=3)
    with ThreadWorker(memory_url, wt.noop):
        futures = [task_worker.future(rid, broker=memory_url) for rid in ("forged", "altered")]
        for fut in futures:
            with pytest.raises(exceptions.TaskCrashed, match="signature check"):
                fut.result(timeout=WAIT)
            assert fut.state.is_crashed()
    assert not proof.exists()
    assert "signature check" in caplog.text
    assert {o.status for o in broker.outcomes(["forged", "altered"])} == {RunStatus.DEAD}


def test_a_tampered_result_is_never_unpickled(memory_url: str, tmp_path: Path) -> None:
    proof = tmp_path / "unpickled"
    with WorkerTaskRunner(memory_url):
        fut = wt.noop.submit(1)
        broker = open_broker(memory_url)  # the process's one memory broker of that name
        (delivery,) = broker.claim("forger", ["workers_tasks:noop"], lease_seconds=5, limit=1)
        assert broker.ack(delivery, sign(b"wrong", pickle.dumps(_CreatesAFile(proof))))
        with pytest.raises(exceptions.TaskCrashed, match="signature check"):
            fut.result(timeout=WAIT)
    assert not proof.exists()


def test_an_over_size_payload_fails_the_submit(memory_url: str) -> None:
    with ThreadWorker(memory_url, wt.noop, wt.big_result):
        with WorkerTaskRunner(memory_url, max_payload_bytes=10_000):
            fut = wt.noop.submit(b"x" * 20_000)
            with pytest.raises(ValueError, match=r"'noop'.*over the broker's limit"):
                fut.result(timeout=WAIT)
            assert fut.state.is_failed()
            rid = getattr(fut, "run_id", None)
            assert rid is None
            assert wt.noop.submit(1).result(timeout=WAIT) == 1
        os.environ["ASYNCFLOW_MAX_PAYLOAD_BYTES"] = "10000"
        try:  # a result over the limit fails its run on the worker, saying so
            with WorkerTaskRunner(memory_url):
                big = wt.big_result.submit(20_000)
                with pytest.raises(ValueError, match="over the broker's limit"):
                    big.result(timeout=WAIT)
        finally:
            del os.environ["ASYNCFLOW_MAX_PAYLOAD_BYTES"]


def _wait_until(condition: Any, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)  # polling a file or a state, bounded by the deadline


# ---- the example (docs/workers.md) ------------------------------------------------------


def test_the_web_app_example_with_its_worker(tmp_path: Path) -> None:
    import json
    import socket
    import urllib.request

    example = TESTS.parent / "examples" / "workers"
    url = f"sqlite:///{tmp_path}/jobs.db"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent)}
    command = [sys.executable, "-m", "asyncflow", "worker", "tasks", "--broker", url]
    worker = subprocess.Popen(command, cwd=example, env=env)
    app = subprocess.Popen(
        [sys.executable, "webapp.py", "--broker", url, "--port", str(port)], cwd=example, env=env
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def call(method: str, path: str) -> dict[str, Any]:
            request = urllib.request.Request(base + path, method=method)
            with urllib.request.urlopen(request, timeout=WAIT) as response:
                return json.loads(response.read())  # type: ignore[no-any-return]

        def post() -> dict[str, Any] | None:
            try:
                return call("POST", "/reports/7")
            except OSError:  # not listening yet
                return None

        _wait_until(lambda: post() is not None)  # (the first POST that answers starts a run)
        rid = call("POST", "/reports/8")["run_id"]
        _wait_until(lambda: call("GET", f"/runs/{rid}")["state"] == "Completed")
        body = call("GET", f"/runs/{rid}")
        assert body["result"]["user_id"] == 8
    finally:
        app.send_signal(signal.SIGINT)
        assert stop_worker_process(worker) == 0
        app.wait(WAIT)
