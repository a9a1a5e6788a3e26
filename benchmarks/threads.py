"""Sync no-op tasks on `ThreadPoolTaskRunner` against `ThreadPoolExecutor`.

Scenarios: `thread` (submit + result), `map` (thread part: `.map` against
`Executor.map`), `scaling` (per-task cost at N = 1k, 10k, 100k).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from asyncflow.task_runners import ThreadPoolTaskRunner

from ._harness import Config, Row, Target, clock, compare, ratio_of
from ._tasks import noop, noop_raw

__all__ = ("MAX_WORKERS", "map_rows", "scaling_rows", "submit_rows")

MAX_WORKERS = 4  # both sides; the runner's default would be min(32, cores + 4)
THREAD_TARGET = Target("≤ 1.5x ThreadPoolExecutor", 1.5)
US = 1e6
MIN_RUNS = 10_000  # a sample of fewer runs repeats the whole batch (pool start included)


def _rounds(n: int) -> int:
    return max(1, MIN_RUNS // n)


def asyncflow_submit(n: int) -> Callable[[], float]:
    def run() -> None:
        with ThreadPoolTaskRunner(max_workers=MAX_WORKERS):
            futures = [noop.submit(i) for i in range(n)]
            for fut in futures:
                fut.result()

    return clock(run, _rounds(n))


def executor_submit(n: int) -> Callable[[], float]:
    def run() -> None:
        with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
            futures = [pool.submit(noop_raw, i) for i in range(n)]
            for fut in futures:
                fut.result()

    return clock(run, _rounds(n))


def warm_up() -> None:
    asyncflow_submit(500)()
    executor_submit(500)()


def submit_row(cfg: Config, n: int, scenario: str = "thread") -> Row:
    ours, theirs, ratio = compare(
        asyncflow_submit(n), executor_submit(n), cfg.repeats, scale=US / n
    )
    return Row(
        scenario,
        f"no-op submit+result, max_workers={MAX_WORKERS}",
        "µs/task",
        ours,
        theirs,
        "ThreadPoolExecutor",
        n=n,
        target=THREAD_TARGET,
        ratio=ratio,
    )


def submit_rows(cfg: Config) -> Iterator[Row]:
    warm_up()
    for n in cfg.pick((2_000, 10_000), (10_000, 100_000)):
        yield submit_row(cfg, n)


def map_rows(cfg: Config) -> Iterator[Row]:
    n = cfg.pick(20_000, 100_000)

    def ours() -> None:
        with ThreadPoolTaskRunner(max_workers=MAX_WORKERS):
            noop.map(range(n)).result()

    def theirs() -> None:
        with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
            list(pool.map(noop_raw, range(n)))

    warm_up()
    a, b, ratio = compare(clock(ours), clock(theirs), cfg.repeats, scale=US / n)
    yield Row(
        "map",
        f"thread: .map(range(N)).result(), max_workers={MAX_WORKERS}",
        "µs/task",
        a,
        b,
        "ThreadPoolExecutor.map",
        n=n,
        target=THREAD_TARGET,
        ratio=ratio,
    )


def scaling_rows(cfg: Config) -> Iterator[Row]:
    """Per-task cost at growing N; flat means the largest N costs at most 1.5x the
    smallest per task (the baseline's own growth is shown beside it)."""
    sizes = cfg.pick((1_000, 5_000, 20_000), (1_000, 10_000, 100_000))
    warm_up()
    rows = [submit_row(cfg, n, scenario="scaling") for n in sizes]
    yield from rows
    first, last = rows[0], rows[-1]
    assert first.value is not None
    assert last.value is not None
    assert first.baseline is not None
    assert last.baseline is not None
    growth = ratio_of(last.value, first.value)
    base_growth = ratio_of(last.baseline, first.baseline)
    yield Row(
        "scaling",
        f"per-task cost at N={sizes[-1]:,} / at N={sizes[0]:,}",
        "x",
        growth,
        base_growth,
        "ThreadPoolExecutor's own growth",
        target=Target("flat: ≤ 1.5x", 1.5, on="value"),
        ratio=ratio_of(growth, base_growth),
        digits=2,
    )
