"""`ProcessPoolTaskRunner` against `ProcessPoolExecutor` (both with 2 workers).

Runs only when `ProcessPoolTaskRunner(max_workers=2)` can be constructed; otherwise
its rows say "not available" (the runner is still being written, issue #4).

- submit + result of a no-op, N runs, against `ProcessPoolExecutor.submit`;
- `.map` over N elements against `ProcessPoolExecutor.map` with its best chunksize
  (the best of a few, probed on a smaller N first). The target is at least 0.5x of
  that throughput, i.e. a per-task cost ratio of at most 2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from ._harness import Config, Row, Target, clock, compare, measure, unavailable
from ._tasks import noop, noop_raw

__all__ = ("process_rows",)

WORKERS = 2
US = 1e6
CHUNKSIZES = (1, 16, 256, 4096)
SUBMIT_TARGET = Target("≤ 1.5x ProcessPoolExecutor", 1.5)
MAP_TARGET = Target("≥ 0.5x best Executor.map throughput (ratio ≤ 2x)", 2.0)


def _runner_factory() -> tuple[Callable[[], Any] | None, str]:
    try:
        from asyncflow.task_runners import ProcessPoolTaskRunner

        ProcessPoolTaskRunner(max_workers=WORKERS)
    except Exception as exc:  # NotImplementedError today; anything else is reported too
        return None, f"{type(exc).__name__}: {exc}"
    return lambda: ProcessPoolTaskRunner(max_workers=WORKERS), ""


def _best_chunksize(n: int) -> int:
    def timed(chunksize: int) -> float:
        def run() -> None:
            with ProcessPoolExecutor(max_workers=WORKERS) as pool:
                list(pool.map(noop_raw, range(n), chunksize=chunksize))

        return measure(clock(run), 1).median

    return min(CHUNKSIZES, key=timed)


def process_rows(cfg: Config) -> Iterator[Row]:
    make_runner, why = _runner_factory()
    if make_runner is None:
        yield unavailable(
            "process", "no-op submit+result vs ProcessPoolExecutor", why, SUBMIT_TARGET
        )
        yield unavailable("process", ".map vs ProcessPoolExecutor.map", why, MAP_TARGET)
        return

    n = cfg.pick(1_000, 10_000)

    def ours_submit() -> None:
        with make_runner():
            futures = [noop.submit(i) for i in range(n)]
            for fut in futures:
                fut.result()

    def theirs_submit() -> None:
        with ProcessPoolExecutor(max_workers=WORKERS) as pool:
            futures = [pool.submit(noop_raw, i) for i in range(n)]
            for fut in futures:
                fut.result()

    a, b, ratio = compare(clock(ours_submit), clock(theirs_submit), cfg.repeats, scale=US / n)
    yield Row(
        "process",
        f"no-op submit+result, {WORKERS} workers (pool start included)",
        "µs/task",
        a,
        b,
        "ProcessPoolExecutor",
        n=n,
        target=SUBMIT_TARGET,
        ratio=ratio,
    )

    m = cfg.pick(10_000, 100_000)
    chunksize = _best_chunksize(cfg.pick(2_000, 10_000))

    def ours_map() -> None:
        with make_runner():
            noop.map(range(m)).result()

    def theirs_map() -> None:
        with ProcessPoolExecutor(max_workers=WORKERS) as pool:
            list(pool.map(noop_raw, range(m), chunksize=chunksize))

    a, b, ratio = compare(clock(ours_map), clock(theirs_map), cfg.repeats, scale=US / m)
    yield Row(
        "process",
        f".map(range(N)) vs Executor.map(chunksize={chunksize}, the best of {CHUNKSIZES})",
        "µs/task",
        a,
        b,
        "ProcessPoolExecutor.map",
        n=m,
        target=MAP_TARGET,
        ratio=ratio,
    )
