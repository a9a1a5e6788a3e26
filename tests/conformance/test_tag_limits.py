"""Tag concurrency limits on every runner (issue 15): the engine holds a run whose
tag's limit is full Pending in the caller's process, before the runner gets it, so
the rule is the same wherever runs execute (threads, the loop, worker processes, a
Dask cluster, task workers); the slot is held here while the run executes there, and
a waiting run can be cancelled without ever running."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import WAIT, FileGate

from asyncflow import tags
from asyncflow._concurrency import _registry
from asyncflow.concurrency import set_limit
from asyncflow.task_runners import TaskRunner

from . import tasks

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def fresh_limits() -> Iterator[None]:
    _registry.use_clock(None)  # forget limits, holders and waiters of other tests
    set_limit("tag:conformance", 1)
    yield
    _registry.use_clock(None)


def test_a_run_waits_pending_for_its_tags_slot(runner: TaskRunner, tmp_path: Path) -> None:
    def gate(name: str) -> FileGate:
        return FileGate(tmp_path / name)

    with runner:
        with tags("conformance"):
            first = tasks.blocker.submit(gate("s1"), gate("r1"))
            second = tasks.blocker.submit(gate("s2"), gate("r2"))
        gate("s1").wait()
        assert second.state.name == "Pending"  # held here, not handed to the runner
        assert _registry.active("tag:conformance") == 1
        gate("r1").open()
        first.result(timeout=WAIT)
        gate("s2").wait()  # the slot passed on
        gate("r2").open()
        second.result(timeout=WAIT)
    assert (_registry.active("tag:conformance"), _registry.waiting()) == (0, 0)


def test_a_run_waiting_for_its_tags_slot_is_cancelled_unrun(
    runner: TaskRunner, tmp_path: Path
) -> None:
    def gate(name: str) -> FileGate:
        return FileGate(tmp_path / name)

    with runner:
        with tags("conformance"):
            first = tasks.blocker.submit(gate("s1"), gate("r1"))
            waiting = tasks.blocker.submit(gate("s2"), gate("r2"))
        gate("s1").wait()
        assert waiting.cancel()
        assert waiting.state.is_cancelled()
        assert _registry.waiting() == 0
        gate("r1").open()
        first.result(timeout=WAIT)
    assert not gate("s2").is_open()  # it never ran
    assert (_registry.active("tag:conformance"), _registry.waiting()) == (0, 0)
