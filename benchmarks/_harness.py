"""Shared measurement helpers: repeats, statistics, ratios, targets and result rows.

Scenarios never time things by hand beyond `clock()`: they hand `compare()` two
zero-argument callables that return elapsed seconds, and get back a `Row`.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = (
    "Config",
    "Row",
    "Stats",
    "Target",
    "clock",
    "compare",
    "diff_of",
    "measure",
    "ratio_of",
    "unavailable",
)


@dataclass(frozen=True)
class Config:
    """How hard to push: `--quick` (CI smoke run) or the full mode."""

    quick: bool
    repeats: int  # per measurement; interleaved asyncflow / baseline pairs
    use_uvloop: bool = False  # the caller's loop in async scenarios

    def pick(self, quick: Any, full: Any) -> Any:
        return quick if self.quick else full


@dataclass(frozen=True)
class Stats:
    """Samples of one quantity (already in the row's unit)."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def lo(self) -> float:
        return min(self.samples)

    @property
    def hi(self) -> float:
        return max(self.samples)

    def fmt(self, digits: int = 1, suffix: str = "") -> str:
        if len(self.samples) == 1:
            return f"{self.median:.{digits}f}{suffix}"
        lo, hi = f"{self.lo:.{digits}f}", f"{self.hi:.{digits}f}"
        return f"{self.median:.{digits}f}{suffix} [{lo}, {hi}]"

    def to_json(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "min": self.lo,
            "max": self.hi,
            "samples": list(self.samples),
        }


@dataclass(frozen=True)
class Target:
    """A target from issue #6: `on` ("ratio" or "value") must be <= `limit`
    (or >= `limit` when `at_least`)."""

    text: str
    limit: float
    on: str = "ratio"
    at_least: bool = False

    def met(self, row: Row) -> bool | None:
        stats = row.ratio if self.on == "ratio" else row.value
        if stats is None:
            return None
        x = stats.median
        return x >= self.limit if self.at_least else x <= self.limit


@dataclass
class Row:
    """One line of the results table."""

    scenario: str
    case: str
    unit: str
    value: Stats | None  # asyncflow
    baseline: Stats | None = None
    baseline_name: str = ""
    n: int | None = None
    target: Target | None = None
    note: str = ""
    ratio: Stats | None = field(default=None)
    digits: int = 1

    @property
    def status(self) -> str:
        if self.value is None:
            return "n/a"
        if self.target is None:
            return "-"
        return "pass" if self.target.met(self) else "MISS"

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "case": self.case,
            "n": self.n,
            "unit": self.unit,
            "asyncflow": None if self.value is None else self.value.to_json(),
            "baseline_name": self.baseline_name,
            "baseline": None if self.baseline is None else self.baseline.to_json(),
            "ratio": None if self.ratio is None else self.ratio.to_json(),
            "target": None if self.target is None else self.target.text,
            "status": self.status,
            "note": self.note,
        }


def clock(fn: Callable[[], object], rounds: int = 1) -> Callable[[], float]:
    """Wrap `fn` into a callable returning its wall time in seconds (the mean of
    `rounds` back-to-back calls, to make short samples long enough to time)."""

    def timed() -> float:
        t0 = time.perf_counter()
        for _ in range(rounds):
            fn()
        return (time.perf_counter() - t0) / rounds

    return timed


def _sample(fn: Callable[[], float]) -> float:
    gc.collect()  # do not bill one side for the other's garbage
    return fn()


def measure(fn: Callable[[], float], repeats: int, scale: float = 1.0) -> Stats:
    """Run `fn` (returns seconds) `repeats` times; samples are seconds * `scale`."""
    return Stats(tuple(_sample(fn) * scale for _ in range(repeats)))


def compare(
    asyncflow_fn: Callable[[], float],
    baseline_fn: Callable[[], float],
    repeats: int,
    scale: float = 1.0,
) -> tuple[Stats, Stats, Stats]:
    """Interleave asyncflow and baseline runs (alternating which goes first, so slow
    drift on a shared machine hits both); return both and the paired ratios."""
    ours: list[float] = []
    theirs: list[float] = []
    for i in range(repeats):
        if i % 2 == 0:
            ours.append(_sample(asyncflow_fn) * scale)
            theirs.append(_sample(baseline_fn) * scale)
        else:
            theirs.append(_sample(baseline_fn) * scale)
            ours.append(_sample(asyncflow_fn) * scale)
    return Stats(tuple(ours)), Stats(tuple(theirs)), ratio_of(ours, theirs)


def ratio_of(a: Stats | list[float], b: Stats | list[float]) -> Stats:
    """Ratios of two quantities, paired by repeat index."""
    xs = a.samples if isinstance(a, Stats) else a
    ys = b.samples if isinstance(b, Stats) else b
    return Stats(tuple(x / y for x, y in zip(xs, ys, strict=True) if y > 0) or (float("nan"),))


def diff_of(a: Stats | list[float], b: Stats | list[float]) -> Stats:
    """Differences of two quantities, paired by repeat index."""
    xs = a.samples if isinstance(a, Stats) else a
    ys = b.samples if isinstance(b, Stats) else b
    return Stats(tuple(x - y for x, y in zip(xs, ys, strict=True)))


def unavailable(scenario: str, case: str, why: str, target: Target | None = None) -> Row:
    return Row(scenario, case, "", None, target=target, note=f"not available: {why}")
