"""DaskTaskRunner (issue 8), on LocalClusters started on this machine.

The runner-independent behaviour checks at the top run for ThreadPoolTaskRunner and
DaskTaskRunner alike (same assertions). Most Dask tests share one module-scoped
in-process cluster (threads); the crash test starts its own process cluster.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import dask
import distributed
import pytest
from distributed.client import FuturesCancelledError
from helpers import DASK_THREADS, WAIT, Boom

from asyncflow import allow_failure, exceptions, flow, task, unmapped
from asyncflow._core._future import Deferred
from asyncflow.contrib.dask import DaskTaskRunner
from asyncflow.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

dask_threads = pytest.mark.allow_threads(*DASK_THREADS)
pytestmark = dask_threads


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.LocalCluster]:
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=2, processes=False, dashboard_address=":0"
    ) as c:
        yield c


@pytest.fixture(params=["threads", "processes", "dask"])
def runner(request: pytest.FixtureRequest, cluster: distributed.LocalCluster) -> TaskRunner:
    if request.param == "threads":
        return ThreadPoolTaskRunner(max_workers=4)
    if request.param == "processes":
        return ProcessPoolTaskRunner(max_workers=2)
    return DaskTaskRunner(cluster=cluster)


# ---- runner-independent behaviour (thread, process and Dask runners) ---------------------


@task
def inc(x: int) -> int:
    return x + 1


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def total(xs: list[int], extra: list[int]) -> int:
    return sum(xs) + sum(extra)


@task
def fail(message: str) -> int:
    raise Boom(message)


@task
async def ainc(x: int) -> int:
    await asyncio.sleep(0)
    return x + 1


@task
def describe(value: Any) -> str:
    return f"{type(value).__name__}: {value}"


# Tasks are shipped to Dask by pickling (even to in-process workers), so they are
# module-level and share state through this module-level object, not closures.
class Shared:
    def __init__(self) -> None:
        self.order: list[str] = []
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.started = threading.Event()
        self.release = threading.Event()


SHARED = Shared()


@pytest.fixture
def shared() -> Iterator[Shared]:
    SHARED.__init__()  # type: ignore[misc]  # a fresh state for each test
    yield SHARED
    SHARED.release.set()
    SHARED.gate.set()


@task
def record(name: str) -> None:
    if name == "a":
        assert SHARED.gate.wait(WAIT)
    SHARED.order.append(name)


@task(retries=3, retry_delay_seconds=[0, 0.01])
def flaky() -> str:
    SHARED.calls.append(1)
    if len(SHARED.calls) < 3:
        raise ConnectionError("transient")
    return "ok"


@task(retries=1)
def always() -> None:
    raise Boom("still")


@task
def blocked() -> None:
    SHARED.started.set()
    SHARED.release.wait(WAIT)


@task(timeout_seconds=0.3)
def slow() -> None:
    SHARED.started.set()
    SHARED.release.wait(WAIT)


@task(timeout_seconds=0.3)
async def aslow() -> None:
    SHARED.started.set()
    await asyncio.to_thread(SHARED.release.wait, WAIT)


@task
def gated_payload(n: int) -> bytes:
    assert SHARED.gate.wait(WAIT)
    return b"x" * n


@task
def payload_size(data: bytes) -> int:
    return len(data)


@task
def hello_local(name: str) -> None:
    SHARED.order.append(f"local {name}")


@task
def hello_dask() -> str:
    return "Hello from Dask!"


@pytest.mark.timeout(30)
def test_submit_result_and_chained_futures(runner: TaskRunner) -> None:
    with runner:
        a = inc.submit(1)
        b = add.submit(a, 10)  # a future argument: waited for, its value passed
        c = inc.submit(b)
        assert c.result(timeout=WAIT) == 13
        assert a.result() == 2
    assert c.state.is_completed()


@pytest.mark.timeout(30)
def test_map_with_unmapped_and_future_elements(runner: TaskRunner) -> None:
    with runner:
        first = inc.submit(0)
        sums = add.map([first, 2, 3], unmapped(100))
        assert sums.result() == [101, 102, 103]
        lists = total.map([[1], [2, 3]], unmapped([10, 20]))
        assert lists.result() == [31, 35]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("runner", ["threads", "dask"], indirect=True)  # shares in-memory state
def test_wait_for_orders_runs_without_data(runner: TaskRunner, shared: Shared) -> None:
    with runner:
        a = record.submit("a")
        b = record.submit("b", wait_for=[a])  # without wait_for, "b" would record first
        shared.gate.set()
        b.result(timeout=WAIT)
    assert shared.order == ["a", "b"]


@pytest.mark.timeout(30)
def test_not_ready_downstream_of_a_failure(runner: TaskRunner) -> None:
    with runner:
        bad = fail.submit("upstream broke")
        data = inc.submit(bad)
        ordered = inc.submit(1, wait_for=[bad])
        later = inc.submit(data)  # two levels down
        for fut in (data, ordered, later):
            with pytest.raises(exceptions.UpstreamFailed) as info:
                fut.result(timeout=WAIT)
            assert fut.state.name == "NotReady"
            assert fut.state.is_pending()
            assert fut.state.is_final()
        assert isinstance(info.value.__cause__, (Boom, exceptions.UpstreamFailed))
        with pytest.raises(exceptions.UpstreamFailed) as direct:
            data.result()
        assert isinstance(direct.value.__cause__, Boom)
        assert bad.state.is_failed()


@pytest.mark.timeout(30)
def test_allow_failure_hands_over_the_exception(runner: TaskRunner) -> None:
    with runner:
        bad = fail.submit("handled")
        seen = describe.submit(allow_failure(bad))
        ordered = inc.submit(1, wait_for=[allow_failure(bad)])
        assert seen.result(timeout=WAIT) == "Boom: handled"
        assert ordered.result(timeout=WAIT) == 2


@pytest.mark.timeout(30)
def test_task_exception_keeps_its_type(runner: TaskRunner) -> None:
    with runner:
        fut = fail.submit("typed")
        with pytest.raises(Boom, match="typed"):
            fut.result(timeout=WAIT)
        assert fut.state.is_failed()
        assert isinstance(fut.result(raise_on_failure=False), Boom)
        assert fut.exception() is not None
        assert fut.exception().__traceback__ is not None  # type: ignore[union-attr]  # checked above


@pytest.mark.timeout(30)
def test_async_tasks(runner: TaskRunner) -> None:
    with runner:
        futs = ainc.map([1, 2, 3])
        chained = ainc.submit(futs[2])
        assert futs.result() == [2, 3, 4]
        assert chained.result(timeout=WAIT) == 5


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_async_with_and_await(runner: TaskRunner) -> None:
    async with runner:
        a = ainc.submit(1)
        b = inc.submit(a)
        assert await b == 3
        assert await inc.map([1, 2]) == [2, 3]


@pytest.mark.timeout(30)
def test_flow_runs_its_tasks_on_the_runner(runner: TaskRunner) -> None:
    @flow(task_runner=runner)
    def pipeline(xs: list[int]) -> list[int]:
        doubled = add.map(xs, xs)
        return inc.map(doubled)

    assert pipeline([1, 2, 3]) == [3, 5, 7]


# ---- Dask specifics -------------------------------------------------------------------------


@task
def where_am_i() -> str:
    return distributed.get_worker().address


def test_tasks_run_on_the_workers(cluster: distributed.LocalCluster) -> None:
    workers = set(cluster.scheduler_info["workers"])
    with DaskTaskRunner(cluster=cluster):
        assert where_am_i.submit().result(timeout=WAIT) in workers
        assert ainc.submit(1).result(timeout=WAIT) == 2


def test_importing_asyncflow_does_not_import_dask() -> None:
    code = textwrap.dedent(
        """
        import sys
        import asyncflow, asyncflow.task_runners
        from asyncflow.task_runners import *
        assert "dask" not in sys.modules and "distributed" not in sys.modules, "eager"
        from asyncflow.task_runners import DaskTaskRunner
        from asyncflow.contrib.dask import DaskTaskRunner as direct
        assert DaskTaskRunner is direct
        assert "distributed" in sys.modules
        import asyncflow.task_runners as tr
        try:
            tr.NoSuchRunner
        except AttributeError as exc:
            assert "NoSuchRunner" in str(exc)
        else:
            raise AssertionError("no AttributeError")
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_duplicate_keeps_every_setting(cluster: distributed.LocalCluster) -> None:
    temporary = DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={"n_workers": 1, "processes": False},
        client_kwargs={"set_as_default": False},
    )
    copy = temporary.duplicate()
    assert copy is not temporary
    assert copy.cluster_class == "distributed.LocalCluster"
    assert copy.cluster_kwargs == {"n_workers": 1, "processes": False}
    assert copy.client_kwargs == {"set_as_default": False}
    assert copy.cluster_kwargs is not temporary.cluster_kwargs
    assert DaskTaskRunner(cluster=cluster).duplicate().cluster is cluster
    remote = DaskTaskRunner(address="tcp://127.0.0.1:8786").duplicate()
    assert remote.address == "tcp://127.0.0.1:8786"
    assert "8786" in repr(remote)


def test_invalid_settings_are_rejected_at_once(cluster: distributed.LocalCluster) -> None:
    with pytest.raises(ValueError, match="either cluster= or address="):
        DaskTaskRunner(cluster=cluster, address="tcp://x:1")
    with pytest.raises(ValueError, match="cannot be combined"):
        DaskTaskRunner(address="tcp://x:1", cluster_kwargs={"n_workers": 1})
    with pytest.raises(TypeError, match="address"):
        DaskTaskRunner(address=8786)  # type: ignore[arg-type]  # the error under test
    runner = DaskTaskRunner(cluster=cluster)
    with pytest.raises(exceptions.RunnerNotStarted):
        runner.submit(inc, {"x": 1})
    with pytest.raises(RuntimeError, match="not started"):
        _ = runner.client


@pytest.mark.timeout(30)
def test_temporary_cluster_is_started_on_enter_and_closed_on_exit() -> None:
    runner = DaskTaskRunner(
        cluster_class=distributed.LocalCluster,
        cluster_kwargs={"n_workers": 1, "processes": False, "dashboard_address": ":0"},
    )
    with runner:
        client = runner.client
        temporary = client.cluster
        assert isinstance(temporary, distributed.LocalCluster)
        assert len(client.scheduler_info()["workers"]) == 1
        assert inc.submit(1).result(timeout=WAIT) == 2
    assert client.status == "closed"
    assert temporary.status.name == "closed"
    assert runner._client is None
    assert runner._owned_cluster is None


@pytest.mark.timeout(30)
def test_address_connects_to_a_running_scheduler_and_leaves_it_running(
    cluster: distributed.LocalCluster,
) -> None:
    runner = DaskTaskRunner(address=cluster.scheduler_address)
    with runner:
        assert add.submit(1, 2).result(timeout=WAIT) == 3
    assert cluster.status.name == "running"
    with DaskTaskRunner(cluster=cluster):  # still usable
        assert inc.submit(1).result(timeout=WAIT) == 2


@pytest.mark.timeout(30)
def test_same_runner_upstreams_are_passed_as_dask_futures(
    cluster: distributed.LocalCluster, shared: Shared
) -> None:
    runner = DaskTaskRunner(cluster=cluster)
    with runner:
        a = gated_payload.submit(1000)
        b = payload_size.submit(a)  # registered while `a` runs: a dependent
        shared.gate.set()
        assert b.result(timeout=WAIT) == 1000
        a_key = runner._results[a].key
        b_key = runner._results[b].key

        def dependencies(dask_scheduler: Any) -> list[str]:
            return [str(dep.key) for dep in dask_scheduler.tasks[b_key].dependencies]

        # On the scheduler, b's task depends on a's: the value went worker to worker...
        assert runner.client.run_on_scheduler(dependencies) == [a_key]
        # ...and never came to the client: it is still on the cluster.
        assert isinstance(a._value, Deferred)
        assert b._value == 1000  # a leaf: fetched eagerly, with its batch
        with ThreadPoolTaskRunner(max_workers=1) as other:
            c = other.submit(payload_size, {"data": a})  # another runner: fetched for it
            assert c.result(timeout=WAIT) == 1000
        assert a.result() == b"x" * 1000


@pytest.mark.timeout(30)
def test_values_left_on_the_cluster_are_read_on_demand_and_kept_on_exit(
    cluster: distributed.LocalCluster, shared: Shared
) -> None:
    runner = DaskTaskRunner(cluster=cluster)
    with runner:
        a = gated_payload.submit(10)
        kept = gated_payload.submit(20)
        b = payload_size.submit(a)
        d = payload_size.submit(kept)
        shared.gate.set()
        assert b.result(timeout=WAIT) == 10
        assert d.result(timeout=WAIT) == 20
        assert isinstance(a._value, Deferred)
        assert a.result() == b"x" * 10  # read on demand, from the cluster
        assert a._value == b"x" * 10  # then kept
        assert isinstance(kept._value, Deferred)
    # The runner fetched what was still on the cluster before closing its client.
    assert kept._value == b"x" * 20
    assert kept.result() == b"x" * 20


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_awaiting_a_value_on_the_cluster(
    cluster: distributed.LocalCluster, shared: Shared
) -> None:
    async with DaskTaskRunner(cluster=cluster):
        a = gated_payload.submit(5)
        b = payload_size.submit(a)
        shared.gate.set()
        assert await b == 5
        assert await a == b"xxxxx"


@pytest.mark.timeout(30)
def test_retries_resubmit_on_the_cluster(cluster: distributed.LocalCluster, shared: Shared) -> None:
    with DaskTaskRunner(cluster=cluster):
        fut = flaky.submit()
        assert fut.result(timeout=WAIT) == "ok"
        bad = always.submit()
        with pytest.raises(Boom):
            bad.result(timeout=WAIT)
    assert len(shared.calls) == 3
    assert fut.state.attempts == 3
    assert bad.state.is_failed()
    assert bad.state.attempts == 2


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_timeout_fails_timed_out_and_cancels_the_dask_future(
    cluster: distributed.LocalCluster, shared: Shared, kind: str
) -> None:
    runner = DaskTaskRunner(cluster=cluster)
    with runner:
        fut = (slow if kind == "sync" else aslow).submit()
        assert shared.started.wait(WAIT)
        remote = runner._attempts[fut._run]
        with pytest.raises(exceptions.TaskTimeout):
            fut.result(timeout=WAIT)
        assert fut.state.name == "TimedOut"
        with pytest.raises(FuturesCancelledError):
            distributed.wait(remote, timeout=WAIT)  # returns once cancelled, with this
        assert remote.cancelled()
        shared.release.set()


@pytest.mark.timeout(30)
def test_cancel_a_running_task(cluster: distributed.LocalCluster, shared: Shared) -> None:
    with DaskTaskRunner(cluster=cluster):
        fut = blocked.submit()
        after = inc.submit(fut)
        assert shared.started.wait(WAIT)
        assert fut.cancel()
        assert fut.state.is_cancelled()
        with pytest.raises(exceptions.UpstreamFailed):
            after.result(timeout=WAIT)
        shared.release.set()


@pytest.mark.timeout(30)
def test_unpicklable_argument_fails_that_task_naming_it(cluster: distributed.LocalCluster) -> None:
    with DaskTaskRunner(cluster=cluster):
        fut = describe.submit(threading.Lock())
        ok = inc.submit(1)
        with pytest.raises(exceptions.SerializationError, match="'describe'") as info:
            fut.result(timeout=WAIT)
        assert "lock" in str(info.value)
        assert fut.state.is_failed()
        assert ok.result(timeout=WAIT) == 2


@pytest.mark.timeout(30)
def test_seed_nested_flows_with_a_dask_flow(
    cluster: distributed.LocalCluster, shared: Shared
) -> None:
    @flow
    def concurrent_nested_flow() -> None:
        marvin = hello_local.submit("marvin")
        ford = hello_local.submit("ford")
        marvin.wait(), ford.wait()

    @flow(task_runner=DaskTaskRunner(cluster=cluster))
    def dask_nested_flow() -> str:
        return hello_dask.submit().result()

    @flow
    def parent_flow() -> str:
        concurrent_nested_flow()
        return dask_nested_flow()

    assert parent_flow() == "Hello from Dask!"
    assert sorted(shared.order) == ["local ford", "local marvin"]


# ---- worker processes -------------------------------------------------------------------------


@task
def die() -> None:
    os._exit(1)


@task
def pid() -> int:
    return os.getpid()


@pytest.mark.timeout(60)
def test_worker_dying_mid_task_crashes_that_run_with_killed_worker() -> None:
    # allowed-failures=0: the first death is final (Dask's default reruns it 3 times).
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        DaskTaskRunner(cluster=cluster),
    ):
        assert pid.submit().result(timeout=WAIT * 3) != os.getpid()  # really elsewhere
        assert ainc.submit(1).result(timeout=WAIT) == 2
        with pytest.raises(Boom):
            fail.submit("pickled across").result(timeout=WAIT)
        dead = die.submit()
        downstream = inc.submit(dead)
        with pytest.raises(exceptions.TaskCrashed, match="'die'") as info:
            dead.result(timeout=WAIT * 3)
        assert dead.state.is_crashed()
        assert isinstance(info.value.__cause__, distributed.KilledWorker)
        assert "KilledWorker" in str(info.value)
        assert downstream.state.name == "NotReady" or not downstream.done()
        with pytest.raises(exceptions.UpstreamFailed):
            downstream.result(timeout=WAIT)
        assert add.submit(1, 2).result(timeout=WAIT * 3) == 3  # the cluster goes on
        # A crash is retried as the task's retry policy says (once here), then final.
        retried = die.with_options(retries=1).submit()
        with pytest.raises(exceptions.TaskCrashed, match="KilledWorker"):
            retried.result(timeout=WAIT * 6)
        assert retried.state.is_crashed()
        assert retried.state.attempts == 2
