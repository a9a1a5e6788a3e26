"""Fixtures of the conformance suite: `runner` (a fresh runner of each registered
kind, see registry.py), `caps` (what that kind does where runners may differ), and the
session's in-process Dask cluster."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from asyncflow.task_runners import TaskRunner

from .registry import IN_PROCESS_CLUSTER, RUNNERS, SLOTS, Capabilities, RunnerKind


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Let each runner's library keep its long-lived threads (only in its own cases),
    and set up the session fixtures a runner needs before the test's leak check takes
    its snapshot of live threads (they live for the session by design)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        kind = RUNNERS.get(callspec.params.get("runner_kind", "")) if callspec else None
        if kind is None:
            continue
        if kind.allow_threads:
            item.add_marker(pytest.mark.allow_threads(*kind.allow_threads))
        names = getattr(item, "fixturenames", None)
        for name in kind.session_fixtures:
            if names is not None and name not in names:
                # The closure is set up in order: before the per-test leak check, after
                # the session's own checks (torn down before they look).
                names.insert(names.index("_no_leaks") if "_no_leaks" in names else 0, name)


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[Any]:
    """One in-process cluster for the session (started on first use): SLOTS threads."""
    import distributed

    with distributed.LocalCluster(**IN_PROCESS_CLUSTER) as cluster:
        yield cluster


@pytest.fixture
def task_worker_processes() -> Iterator[Any]:
    """Task worker processes on a fresh SQLite broker, for one test (workers-sqlite)."""
    from workers_support import WorkerProcesses, sqlite_url

    processes = WorkerProcesses(sqlite_url(), SLOTS).start(ready=True)
    try:
        yield processes
    finally:
        processes.stop()


@pytest.fixture(params=list(RUNNERS))
def runner_kind(request: pytest.FixtureRequest) -> RunnerKind:
    return RUNNERS[request.param]


@pytest.fixture
def runner(runner_kind: RunnerKind, request: pytest.FixtureRequest) -> TaskRunner:
    """A fresh, not yet started runner of this kind."""
    return runner_kind.make(request.getfixturevalue)


@pytest.fixture
def caps(runner_kind: RunnerKind) -> Capabilities:
    return runner_kind.caps
