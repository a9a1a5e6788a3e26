"""Import time of `asyncflow` against `asyncio`, each in a fresh interpreter.

Both commands pay the same interpreter start-up, so the difference of the medians is
what `import asyncflow` adds over `import asyncio` (asyncflow imports asyncio itself).
Runs alternate between the two commands so machine noise hits both.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

from ._harness import Config, Row, Stats, Target, diff_of, ratio_of

__all__ = ("import_rows", "importtime_top")


def _run(module: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
    return time.perf_counter() - t0


def importtime_top(module: str = "asyncflow", top: int = 8) -> list[tuple[int, str]]:
    """The modules with the largest self time under `python -X importtime` (µs, name)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    rows = []
    for line in out.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative, name = line.removeprefix("import time:").split("|")
        rows.append((int(self_us), name.strip()))
    return sorted(rows, reverse=True)[:top]


def import_rows(cfg: Config) -> Iterator[Row]:
    repeats = cfg.pick(10, 40)
    ours: list[float] = []
    theirs: list[float] = []
    _run("asyncflow")  # warm the file-system cache and the bytecode
    for i in range(repeats):
        pair = [(ours, "asyncflow"), (theirs, "asyncio")]
        for into, module in pair if i % 2 == 0 else reversed(pair):
            into.append(_run(module) * 1e3)
    a, b = Stats(tuple(ours)), Stats(tuple(theirs))
    diff = diff_of(ours, theirs)
    top = ", ".join(f"{name} {us / 1e3:.1f}" for us, name in importtime_top(top=3))
    yield Row(
        "import",
        f"python -c 'import asyncflow' minus 'import asyncio' (interpreter start included "
        f"in both; asyncflow {a.fmt()} ms; top self ms: {top})",
        "ms",
        diff,
        b,
        "python -c 'import asyncio'",
        n=repeats,
        target=Target("within 30 ms of asyncio", 30.0, on="value"),
        ratio=ratio_of(ours, theirs),
    )
