"""Async no-op tasks in an async flow against `asyncio.create_task` + `gather`.

Scenarios: `async` (submit + await, N = 10k and 100k) and `map` (async part).
Each sample runs in a fresh event loop (`asyncio.run`, or uvloop with `--uvloop`);
only the work inside the loop is timed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

from asyncflow import flow

from ._harness import Config, Row, Target, compare
from ._tasks import anoop, anoop_raw

__all__ = ("map_rows", "run_in_loop", "submit_rows")

ASYNC_TARGET = Target("≤ 2x create_task", 2.0)
US = 1e6


def run_in_loop(cfg: Config, make: Callable[[], Awaitable[None]]) -> Callable[[], float]:
    """A sampler: run `make()` in a fresh loop and return how long it took inside it."""

    async def timed() -> float:
        t0 = time.perf_counter()
        await make()
        return time.perf_counter() - t0

    def sample() -> float:
        if cfg.use_uvloop:
            import uvloop

            return uvloop.run(timed())  # type: ignore[no-any-return]
        return asyncio.run(timed())

    return sample


@flow
async def submit_flow(n: int) -> None:
    futures = [anoop.submit(i) for i in range(n)]
    for fut in futures:
        await fut


@flow
async def map_flow(n: int) -> None:
    await anoop.map(range(n))


async def gather_baseline(n: int) -> None:
    await asyncio.gather(*[asyncio.create_task(anoop_raw(i)) for i in range(n)])


def _row(cfg: Config, case: str, n: int, flow_fn: Callable[[int], Awaitable[None]]) -> Row:
    ours, theirs, ratio = compare(
        run_in_loop(cfg, lambda: flow_fn(n)),
        run_in_loop(cfg, lambda: gather_baseline(n)),
        cfg.repeats,
        scale=US / n,
    )
    return Row(
        "async" if case.startswith("no-op") else "map",
        case,
        "µs/task",
        ours,
        theirs,
        "create_task+gather",
        n=n,
        target=ASYNC_TARGET,
        ratio=ratio,
    )


def _warm_up(cfg: Config) -> None:
    run_in_loop(cfg, lambda: submit_flow(500))()


def submit_rows(cfg: Config) -> Iterator[Row]:
    _warm_up(cfg)
    for n in cfg.pick((2_000, 10_000), (10_000, 100_000)):
        yield _row(cfg, "no-op submit+await in an async flow", n, submit_flow)


def map_rows(cfg: Config) -> Iterator[Row]:
    _warm_up(cfg)
    yield _row(
        cfg, "async: await .map(range(N)) in an async flow", cfg.pick(20_000, 100_000), map_flow
    )
