"""Direct call of a sync task inside a flow (`noop(1)`), against the plain function.

The value is the overhead per call: (task call - plain call) in µs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from asyncflow import flow

from ._harness import Config, Row, Stats, Target, diff_of, measure, ratio_of
from ._tasks import noop, noop_raw

__all__ = ("direct_rows",)

US = 1e6


@flow
def calls(n: int) -> tuple[float, float]:
    """Time n direct task calls and n plain calls, in the same flow."""
    t0 = time.perf_counter()
    for i in range(n):
        noop(i)
    t1 = time.perf_counter()
    for i in range(n):
        noop_raw(i)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def direct_rows(cfg: Config) -> Iterator[Row]:
    n = cfg.pick(10_000, 100_000)
    calls(100)  # warm-up
    pairs = []

    def sample() -> float:
        pairs.append(calls(n))
        return 0.0

    measure(sample, cfg.repeats)
    task_us = Stats(tuple(a * US / n for a, _ in pairs))
    plain_us = Stats(tuple(b * US / n for _, b in pairs))
    yield Row(
        "direct",
        "direct call of a sync task in a flow: overhead over a plain call",
        "µs/call",
        diff_of(task_us, plain_us),
        plain_us,
        "plain call (itself)",
        n=n,
        target=Target("overhead < 20 µs", 20.0, on="value"),
        ratio=ratio_of(task_us, plain_us),
        digits=2,
    )
