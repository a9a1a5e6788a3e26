"""The per-run hot path keeps the properties its speed depends on.

Throughput of many small runs depends on more than instruction counts: a run that
leaves a reference cycle behind is freed only by the cyclic GC, whose collections of
a large backlog hold the GIL for milliseconds and stall every worker. These tests pin
such properties down, so a later change cannot lose them silently.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from asyncflow import flow, task
from asyncflow._core import Run
from asyncflow.task_runners import ThreadPoolTaskRunner


@task
def _noop(x: int) -> int:
    return x


@task
async def _anoop(x: int) -> int:
    return x


@pytest.fixture
def saved_garbage() -> Iterator[list[object]]:
    """`gc.garbage` holding whatever only the cyclic GC could free during the test."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _runs_in(garbage: list[object]) -> int:
    gc.collect()
    return sum(1 for obj in garbage if isinstance(obj, Run))


@pytest.mark.timeout(30)
def test_a_finished_thread_run_is_freed_without_the_cyclic_gc(
    saved_garbage: list[object],
) -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        futures = [_noop.submit(i) for i in range(50)]
        assert [f.result() for f in futures] == list(range(50))
    del futures
    assert _runs_in(saved_garbage) == 0


@pytest.mark.timeout(30)
def test_a_direct_call_is_freed_without_the_cyclic_gc(saved_garbage: list[object]) -> None:
    @flow
    def calls() -> list[int]:
        return [_noop(i) for i in range(20)]

    assert calls() == list(range(20))
    assert _runs_in(saved_garbage) == 0
