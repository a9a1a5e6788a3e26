"""Event-loop lag: the largest delay of a 1 ms ticker on the caller's loop while an
async flow submits and awaits 1,000 blocking sync tasks (each `time.sleep(0.001)`).
The baseline does the same with `loop.run_in_executor` on a `ThreadPoolExecutor`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asyncflow import flow
from asyncflow.task_runners import ThreadPoolTaskRunner

from ._harness import Config, Row, Stats, Target, ratio_of
from ._tasks import block, block_raw
from .async_tasks import run_in_loop
from .threads import MAX_WORKERS

__all__ = ("lag_rows",)

TICK = 0.001
BLOCKING_TASKS = 1000


async def max_lag_during(work: Callable[[], Awaitable[Any]]) -> float:
    """Run `work()` while a 1 ms ticker records how late it wakes; the max in seconds."""
    worst = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        while not done.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(TICK)
            worst = max(worst, time.perf_counter() - t0 - TICK)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # let the ticker start
    try:
        await work()
    finally:
        done.set()
        await tick
    return worst


@flow(task_runner=ThreadPoolTaskRunner(max_workers=MAX_WORKERS))
async def blocking_flow() -> None:
    futures = [block.submit() for _ in range(BLOCKING_TASKS)]
    for fut in futures:
        await fut


async def executor_work() -> None:
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
        await asyncio.gather(
            *[loop.run_in_executor(pool, block_raw) for _ in range(BLOCKING_TASKS)]
        )


def lag_rows(cfg: Config) -> Iterator[Row]:
    ours: list[float] = []
    theirs: list[float] = []

    def lag_of(work: Callable[[], Awaitable[Any]], into: list[float]) -> Callable[[], float]:
        async def once() -> None:
            into.append(await max_lag_during(work) * 1e3)

        return run_in_loop(cfg, once)

    for i in range(cfg.repeats):
        pair = [lag_of(blocking_flow, ours), lag_of(executor_work, theirs)]
        for sample in pair if i % 2 == 0 else reversed(pair):
            sample()
    a, b = Stats(tuple(ours)), Stats(tuple(theirs))
    yield Row(
        "loop-lag",
        f"max delay of a 1 ms ticker while {BLOCKING_TASKS:,} sleep(1 ms) sync tasks run",
        "ms",
        a,
        b,
        "run_in_executor",
        n=BLOCKING_TASKS,
        target=Target("< 10 ms", 10.0, on="value"),
        ratio=ratio_of(ours, theirs),
        digits=2,
    )
