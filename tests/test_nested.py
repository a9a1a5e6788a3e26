"""Nested submission on a bounded pool does not deadlock: with
`ThreadPoolTaskRunner(max_workers=2)`, tasks that submit children and block on their
results complete, also in chains several levels deep, from sync and async tasks."""

from __future__ import annotations

import asyncio
import threading

import pytest

from asyncflow import flow, task
from asyncflow.task_runners import ThreadPoolTaskRunner

WAIT = 20  # a deadlock shows as a TimeoutError within this many seconds, not a hang


@task
def child(i: int) -> int:
    return i * i


@task
def parent(n: int) -> int:
    futures = [child.submit(i) for i in range(n)]
    return sum(f.result(timeout=WAIT) for f in futures)


@task
def chain(depth: int) -> int:
    if depth == 0:
        return 0
    return chain.submit(depth - 1).result(timeout=WAIT) + 1


@task
def wide_chain(depth: int) -> int:
    """Each level submits two children and blocks on both: 2**depth leaves."""
    if depth == 0:
        return 1
    left, right = wide_chain.submit(depth - 1), wide_chain.submit(depth - 1)
    return left.result(timeout=WAIT) + right.result(timeout=WAIT)


@task
async def aparent(n: int) -> int:
    futures = [child.submit(i) for i in range(n)]
    return sum([await f for f in futures])


@task
async def achain(depth: int) -> int:
    if depth == 0:
        return 0
    return await achain.submit(depth - 1) + 1


@task
async def amixed_chain(depth: int) -> int:
    """Async levels that submit sync levels that submit async levels..."""
    if depth == 0:
        return 0
    return await smixed_chain.submit(depth - 1) + 1


@task
def smixed_chain(depth: int) -> int:
    if depth == 0:
        return 0
    return amixed_chain.submit(depth - 1).result(timeout=WAIT) + 1


SQUARES = sum(i * i for i in range(10))


@pytest.mark.timeout(30)
def test_a_task_waiting_on_ten_children_completes() -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        assert parent.submit(10).result(timeout=WAIT) == SQUARES


@pytest.mark.timeout(30)
def test_two_parents_fill_the_pool_and_still_complete() -> None:
    # both workers block on children at once: a plain pool would deadlock here
    both_started = threading.Barrier(2, timeout=WAIT)

    @task
    def blocking_parent(n: int) -> int:
        both_started.wait()
        futures = [child.submit(i) for i in range(n)]
        return sum(f.result(timeout=WAIT) for f in futures)

    with ThreadPoolTaskRunner(max_workers=2):
        futures = blocking_parent.map([10, 10])
        assert futures.result(timeout=WAIT) == [SQUARES, SQUARES]


@pytest.mark.timeout(30)
def test_a_chain_five_levels_deep_completes() -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        assert chain.submit(5).result(timeout=WAIT) == 5


@pytest.mark.timeout(30)
def test_a_wide_tree_of_blocking_tasks_completes() -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def tree() -> int:
        return wide_chain.submit(4).result(timeout=WAIT)

    assert tree() == 16


@pytest.mark.timeout(30)
def test_children_wait_via_wait_and_map_in_a_flow() -> None:
    @task
    def map_parent(n: int) -> list[int]:
        return child.map(range(n)).result(timeout=WAIT)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def pipeline() -> list[list[int]]:
        return map_parent.map([10, 10, 10]).result(timeout=WAIT)

    assert pipeline() == [[i * i for i in range(10)]] * 3


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_async_parent_waiting_on_ten_children() -> None:
    async with ThreadPoolTaskRunner(max_workers=2):
        assert await asyncio.wait_for(aparent.submit(10).wait_async(), WAIT) is None
        assert await aparent.submit(10) == SQUARES


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_async_chain_five_levels_deep() -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    async def pipeline() -> int:
        return await achain.submit(5)

    assert await asyncio.wait_for(pipeline(), WAIT) == 5


@pytest.mark.timeout(30)
def test_async_chain_from_a_sync_scope() -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        assert achain.submit(5).result(timeout=WAIT) == 5
        assert aparent.submit(10).result(timeout=WAIT) == SQUARES


@pytest.mark.timeout(30)
def test_mixed_sync_async_chain_six_levels_deep() -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        assert smixed_chain.submit(6).result(timeout=WAIT) == 6


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_mixed_chain_from_async_code() -> None:
    async with ThreadPoolTaskRunner(max_workers=2):
        assert await asyncio.wait_for(amixed_chain.submit(6).wait_async(), WAIT) is None
        assert await amixed_chain.submit(6) == 6
