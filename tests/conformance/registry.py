"""The runner registry of the conformance suite: every test that takes the `runner`
fixture (tests/conformance/conftest.py) runs once per entry of `RUNNERS`.

An entry is a factory (a fresh `TaskRunner` per test: the leak check wants no worker
left behind by a test) and a `Capabilities` record: what that runner does where the
SPEC lets runners differ (a thread cannot be killed, a Dask worker thread cannot be
interrupted, only pickling runners reject unpicklable values...). Tests never skip a
runner: they consult `caps` and assert what this runner does instead.

`Capabilities.defects` lists known bugs of a runner by topic. A test whose expectation
a runner does not meet yet calls `expect_defect(request, caps, topic)`, which marks that
one case `xfail(strict=True)`: when the bug is fixed the case XPASSes, fails (strict),
and the entry is removed here.

Adding a runner is one entry in `RUNNERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from asyncflow.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

SLOTS = 2  # every runner here runs at most this many task runs at once
# Enough queued runs that a runner which batches them to a worker would do so
# (the process pool batches 1 + queue length // (4 * workers) runs at once).
QUEUED = 8 * SLOTS + 2


@dataclass(frozen=True)
class Capabilities:
    """Where this runner's behaviour differs, as the docs (policies.md, runners.md) say."""

    # Arguments and results travel pickled: one that cannot be pickled fails its run
    # with SerializationError; on a runner that does not pickle the very object arrives.
    pickles: bool
    # Results travel pickled too (an in-process Dask worker hands its result over as
    # it is): one that cannot be pickled fails its run with SerializationError.
    pickles_results: bool
    # A sync run still running at its timeout is stopped (its worker process killed);
    # otherwise the future fails TimedOut at once and the function runs on (its late
    # result is discarded).
    kills_on_timeout: bool
    # `future.cancel()` on a running sync run: "refused" (returns False, the run
    # finishes normally), "killed" (True, Cancelled, the worker process is killed), or
    # "abandoned" (True, Cancelled, the function runs on and its result is discarded).
    cancel_running_sync: str
    # Runs execute in the test's own process: a run that kills its process kills the
    # test, so crash isolation is checked in a subprocess instead.
    in_process: bool
    # The state of a run that waits for a free slot: "Pending" where the runner itself
    # queues it; "Running" where it is handed to an engine at once that does not say
    # when it starts (Dask: the run is RUNNING once submitted to the scheduler).
    queued_state_name: str = "Pending"
    # False where the runner hands runs to an engine that schedules them itself (Dask):
    # a run "queued" behind full slots may run anyway, so only weaker rules hold.
    queue_is_ours: bool = True
    # Tasks blocked on their children may fill every slot without a deadlock.
    nests_past_its_slots: bool = True
    # Tasks defined in a test function (closures, lambdas) can be submitted; where
    # tasks travel by name (task workers import them) they fail at `.submit()`.
    ships_local_tasks: bool = True
    # Retries, their delays, retry conditions and timeouts are applied in the caller's
    # process (closures over the test's objects see every call); False: where the task
    # executes (a task worker), on pickled copies, and the caller sees only Running
    # and the final state.
    policies_in_caller: bool = True
    # A run whose process dies is handed to another worker (at-least-once delivery)
    # instead of ending CRASHED (which happens only after its last delivery).
    redelivers_crashes: bool = False
    # Workers pull runs from a shared queue and a worker's sync run is not interrupted:
    # a queued run that a worker takes between a failing flow body letting its running
    # runs end and the flow cancelling the rest completes instead of ending Cancelled.
    workers_take_queued_runs: bool = False
    # Known defects: topic -> reason (see `expect_defect`).
    defects: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunnerKind:
    name: str
    # A fresh runner, given a lookup of shared resources by name (in pytest, the session
    # fixtures below; in a subprocess probe, `no_shared_resources`: the runner brings
    # its own).
    make: Callable[[Callable[[str], Any]], TaskRunner]
    caps: Capabilities
    # Long-lived threads this runner's library keeps (see tests/conftest.py).
    allow_threads: tuple[str, ...] = ()
    # Session fixtures `make` uses (set up before the leak check's snapshot).
    session_fixtures: tuple[str, ...] = ()


DASK_THREADS = (
    "Dask-Offload",
    "Dask-Callback-Thread",
    "0-Dask-Default-Threads",
)
IN_PROCESS_CLUSTER = {
    "n_workers": 1,
    "threads_per_worker": SLOTS,
    "processes": False,
    "dashboard_address": ":0",
}


def no_shared_resources(name: str) -> None:
    return None


def _dask(shared: Callable[[str], Any]) -> TaskRunner:
    from asyncflow.contrib.dask import DaskTaskRunner

    cluster = shared("dask_cluster")
    if cluster is None:  # a temporary cluster of its own
        return DaskTaskRunner(cluster_kwargs=dict(IN_PROCESS_CLUSTER))
    return DaskTaskRunner(cluster=cluster)


def _executor(shared: Callable[[str], Any]) -> TaskRunner:
    # docs/writing-a-runner.md's example runner, over a thread pool (tests import it).
    from test_executor_runner import make_executor_runner

    return make_executor_runner(max_workers=SLOTS)


RUNNERS: dict[str, RunnerKind] = {
    "thread": RunnerKind(
        "thread",
        lambda shared: ThreadPoolTaskRunner(max_workers=SLOTS),
        Capabilities(
            pickles=False,
            pickles_results=False,
            kills_on_timeout=False,
            cancel_running_sync="refused",
            in_process=True,
        ),
    ),
    "process": RunnerKind(
        "process",
        lambda shared: ProcessPoolTaskRunner(max_workers=SLOTS),
        Capabilities(
            pickles=True,
            pickles_results=True,
            kills_on_timeout=True,
            cancel_running_sync="killed",
            in_process=False,
        ),
    ),
    "executor": RunnerKind(
        "executor",
        _executor,
        Capabilities(
            pickles=False,
            pickles_results=False,
            kills_on_timeout=False,
            cancel_running_sync="refused",
            in_process=True,
            # An executor is told nothing when a call starts: Running once handed over.
            queued_state_name="Running",
            # A plain executor cannot lend a blocked worker's thread (see the example).
            nests_past_its_slots=False,
        ),
        allow_threads=("asyncflow-executor",),
    ),
    "dask": RunnerKind(
        "dask",
        _dask,
        Capabilities(
            pickles=True,
            pickles_results=False,  # in-process workers: the result object itself
            kills_on_timeout=False,
            cancel_running_sync="abandoned",
            in_process=True,  # an in-process LocalCluster (processes=False)
            queued_state_name="Running",
            queue_is_ours=False,
        ),
        allow_threads=DASK_THREADS,
        session_fixtures=("dask_cluster",),
    ),
}


def _workers_in_process(shared: Callable[[str], Any]) -> TaskRunner:
    from workers_support import InProcessWorkers

    return InProcessWorkers(SLOTS)


def _workers_subprocess(shared: Callable[[str], Any]) -> TaskRunner:
    from workers_support import SubprocessWorkers

    from asyncflow.task_runners import WorkerTaskRunner

    processes = shared("task_worker_processes")
    if processes is None:  # a probe: workers of its own
        return SubprocessWorkers(SLOTS)
    # Workers started before the test (as in production: long-lived, started apart), so
    # a flow's runner (a duplicate: same broker) does not wait for a worker to start.
    return WorkerTaskRunner(processes.url)


_TASK_WORKERS = {
    "pickles": True,
    "pickles_results": True,
    "kills_on_timeout": False,
    "cancel_running_sync": "refused",
    "ships_local_tasks": False,
    "policies_in_caller": False,
    "redelivers_crashes": True,
    "workers_take_queued_runs": True,
}
RUNNERS["workers-memory"] = RunnerKind(
    "workers-memory",
    _workers_in_process,
    Capabilities(in_process=True, **_TASK_WORKERS),  # type: ignore[arg-type]  # a literal dict of the fields above
    allow_threads=(),
)
RUNNERS["workers-sqlite"] = RunnerKind(
    "workers-sqlite",
    _workers_subprocess,
    Capabilities(in_process=False, **_TASK_WORKERS),  # type: ignore[arg-type]  # a literal dict of the fields above
    allow_threads=("tests-supervisor",),
    session_fixtures=("task_worker_processes",),
)


def expect_defect(request: pytest.FixtureRequest, caps: Capabilities, topic: str) -> None:
    """Mark this case xfail(strict) if this runner has a known defect on `topic`."""
    reason = caps.defects.get(topic)
    if reason is not None:
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))
