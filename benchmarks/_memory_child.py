"""Memory measurements, each in a fresh interpreter so the peak RSS is its own.

    python -m benchmarks._memory_child pending asyncflow 100000
    python -m benchmarks._memory_child stream executor 1000000

prints one JSON object. `pending`: N runs held on one `threading.Event` (the first
few occupy the workers, the rest wait), measured once by RSS (no tracemalloc) and
once by tracemalloc. `stream`: an N-element bounded stream (window 100), peak RSS
growth over the RSS before it started.
"""

from __future__ import annotations

import collections
import gc
import json
import os
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from asyncflow.task_runners import ThreadPoolTaskRunner

from ._tasks import GATE, gated, gated_raw, noop, noop_raw

MAX_WORKERS = 4
WINDOW = 100
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * _PAGE


def peak_rss_bytes() -> int:
    """This process's RSS high-water mark. Not `getrusage().ru_maxrss`: Linux carries
    that over `exec` from the forking parent, so a child would report the parent's."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


class _Side:
    """One side's way to start a pool and submit: asyncflow or the raw executor."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def pool(self) -> Any:
        if self.kind == "asyncflow":
            return ThreadPoolTaskRunner(max_workers=MAX_WORKERS)
        return ThreadPoolExecutor(max_workers=MAX_WORKERS)

    def submitter(self, pool: Any, asyncflow_task: Any, raw: Callable[[int], int]) -> Any:
        if self.kind == "asyncflow":
            return asyncflow_task.submit
        return lambda x: pool.submit(raw, x)


def _hold_pending(side: _Side, n: int, measure: Callable[[], int]) -> tuple[int, int]:
    """Submit n gated runs; return (bytes grown per `measure`, peak RSS)."""
    GATE.clear()
    with side.pool() as pool:
        warm = side.submitter(pool, noop, noop_raw)
        for fut in [warm(i) for i in range(200)]:
            fut.result()
        submit = side.submitter(pool, gated, gated_raw)
        gc.collect()
        before = measure()
        futures = [submit(i) for i in range(n)]
        gc.collect()
        grown = measure() - before
        peak = peak_rss_bytes()
        GATE.set()
        for fut in futures:
            fut.result()
    del futures
    gc.collect()
    return grown, peak


def pending(side: _Side, n: int) -> dict[str, Any]:
    rss_grown, peak = _hold_pending(side, n, rss_bytes)
    tracemalloc.start()
    try:
        traced_grown, _ = _hold_pending(side, n, lambda: tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    return {"rss_grown": rss_grown, "peak_rss": peak, "traced_grown": traced_grown}


def _executor_stream(pool: ThreadPoolExecutor, n: int) -> None:
    window: collections.deque[Future[int]] = collections.deque()
    for i in range(n):
        if len(window) >= WINDOW:
            window.popleft().result()
        window.append(pool.submit(noop_raw, i))
    while window:
        window.popleft().result()


def stream(side: _Side, n: int) -> dict[str, Any]:
    with side.pool() as pool:
        gc.collect()
        rss0, peak0 = rss_bytes(), peak_rss_bytes()
        t0 = time.perf_counter()
        if side.kind == "asyncflow":
            for _ in noop.map_iter(range(n), max_concurrency=WINDOW):
                pass
        else:
            _executor_stream(pool, n)
        seconds = time.perf_counter() - t0
        peak = peak_rss_bytes()
    return {"rss_before": rss0, "peak_before": peak0, "peak_rss": peak, "seconds": seconds}


def main(argv: list[str]) -> None:
    what, kind, n = argv[0], argv[1], int(argv[2])
    side = _Side(kind)
    result = pending(side, n) if what == "pending" else stream(side, n)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
