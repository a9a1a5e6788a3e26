"""Memory: bytes per pending future (100k runs held on one Event) and the peak RSS
growth of a 1,000,000-element `map_iter` stream with `max_concurrency=100`.

Each measurement runs in a fresh interpreter (`benchmarks._memory_child`), alternating
asyncflow and the `ThreadPoolExecutor` baseline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._harness import Config, Row, Stats, Target, ratio_of

__all__ = ("pending_rows", "stream_rows")

MB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent  # so `-m benchmarks._memory_child` imports


def _child(what: str, kind: str, n: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks._memory_child", what, kind, str(n)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _both(cfg: Config, what: str, n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    for i in range(cfg.pick(1, 3)):
        pair = [(ours, "asyncflow"), (theirs, "executor")]
        for into, kind in pair if i % 2 == 0 else reversed(pair):
            into.append(_child(what, kind, n))
    return ours, theirs


def _stats(samples: list[dict[str, Any]], key: str, scale: float) -> Stats:
    return Stats(tuple(s[key] * scale for s in samples))


def pending_rows(cfg: Config) -> Iterator[Row]:
    n = cfg.pick(20_000, 100_000)
    ours, theirs = _both(cfg, "pending", n)
    traced_a, traced_b = _stats(ours, "traced_grown", 1 / n), _stats(theirs, "traced_grown", 1 / n)
    yield Row(
        "memory",
        "bytes per pending future (tracemalloc; runs held on one threading.Event)",
        "bytes",
        traced_a,
        traced_b,
        "ThreadPoolExecutor",
        n=n,
        target=Target("< 2 KB per future", 2048, on="value"),
        ratio=ratio_of(traced_a, traced_b),
        digits=0,
    )
    rss_a, rss_b = _stats(ours, "rss_grown", 1 / n), _stats(theirs, "rss_grown", 1 / n)
    yield Row(
        "memory",
        "RSS growth per pending future",
        "bytes",
        rss_a,
        rss_b,
        "ThreadPoolExecutor",
        n=n,
        ratio=ratio_of(rss_a, rss_b),
        digits=0,
    )
    peak_a, peak_b = _stats(ours, "peak_rss", 1 / MB), _stats(theirs, "peak_rss", 1 / MB)
    yield Row(
        "memory",
        "peak RSS of the process holding them",
        "MB",
        peak_a,
        peak_b,
        "ThreadPoolExecutor",
        n=n,
        ratio=ratio_of(peak_a, peak_b),
    )


def _growth(samples: list[dict[str, Any]]) -> Stats:
    return Stats(tuple(max(0, s["peak_rss"] - s["rss_before"]) / MB for s in samples))


def stream_rows(cfg: Config) -> Iterator[Row]:
    n = cfg.pick(100_000, 1_000_000)
    ours, theirs = _both(cfg, "stream", n)
    grow_a, grow_b = _growth(ours), _growth(theirs)
    yield Row(
        "stream",
        "map_iter(max_concurrency=100): peak RSS growth",
        "MB",
        grow_a,
        grow_b,
        "hand-written 100-future window on ThreadPoolExecutor",
        n=n,
        target=Target("< 50 MB (docs/policies.md)", 50.0, on="value"),
        ratio=ratio_of(grow_a, grow_b),
    )
    time_a, time_b = _stats(ours, "seconds", 1e6 / n), _stats(theirs, "seconds", 1e6 / n)
    yield Row(
        "stream",
        "map_iter(max_concurrency=100): time per element",
        "µs/task",
        time_a,
        time_b,
        "hand-written window",
        n=n,
        target=Target("≤ 1.5x ThreadPoolExecutor", 1.5),
        ratio=ratio_of(time_a, time_b),
    )
