"""Import time of `asyncflow` against `asyncio`, each in a fresh interpreter.

Both commands pay the same interpreter start-up, so the difference of the medians is
what `import asyncflow` adds over `import asyncio` (asyncflow imports asyncio itself).
Runs alternate between the two commands so machine noise hits both.

Bytecode is cached, as for an installed package: the children get a private
`PYTHONPYCACHEPREFIX` (a temporary directory, warmed by one untimed run of each) and
`PYTHONDONTWRITEBYTECODE` removed, so a checkout or environment that disables
bytecode writing does not bill asyncflow for compiling its sources on every run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

from ._harness import Config, Row, Stats, Target, diff_of, ratio_of

__all__ = ("import_rows", "importtime_top")


def child_env(pycache: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def _run(module: str, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, env=env)
    return time.perf_counter() - t0


def _self_times(env: dict[str, str], module: str) -> dict[str, int]:
    """Self time (µs) of each module imported by `import module` (`-X importtime`)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stderr
    times = {}
    for line in out.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative, name = line.removeprefix("import time:").split("|")
        times[name.strip()] = int(self_us)
    return times


def importtime_top(env: dict[str, str], top: int = 8) -> list[tuple[int, str]]:
    """The slowest modules `import asyncflow` loads beyond `import asyncio` (µs, name)."""
    extra = _self_times(env, "asyncflow")
    for name in _self_times(env, "asyncio"):
        extra.pop(name, None)
    return sorted(((us, name) for name, us in extra.items()), reverse=True)[:top]


def _sample(repeats: int, env: dict[str, str]) -> tuple[list[float], list[float]]:
    """Wall ms of `import asyncflow` and `import asyncio` children, alternating."""
    ours: list[float] = []
    theirs: list[float] = []
    for module in ("asyncflow", "asyncio"):
        _run(module, env)  # untimed: writes the bytecode, warms the file-system cache
    for i in range(repeats):
        pair = [(ours, "asyncflow"), (theirs, "asyncio")]
        for into, module in pair if i % 2 == 0 else reversed(pair):
            into.append(_run(module, env) * 1e3)
    return ours, theirs


def import_rows(cfg: Config) -> Iterator[Row]:
    repeats = cfg.pick(15, 60)
    pycache = tempfile.mkdtemp(prefix="asyncflow-bench-pycache-")
    try:
        env = child_env(pycache)
        ours, theirs = _sample(repeats, env)
        top = ", ".join(f"{name} {us / 1e3:.1f}" for us, name in importtime_top(env, top=3))
    finally:
        shutil.rmtree(pycache, ignore_errors=True)
    a, b = Stats(tuple(ours)), Stats(tuple(theirs))
    diff = diff_of(ours, theirs)
    yield Row(
        "import",
        f"'import asyncflow' minus 'import asyncio', fresh interpreters, bytecode cached "
        f"(asyncflow alone {a.fmt()} ms; its slowest own modules, self ms: {top})",
        "ms",
        diff,
        b,
        "python -c 'import asyncio'",
        n=repeats,
        target=Target("within 30 ms of asyncio", 30.0, on="value"),
        ratio=ratio_of(ours, theirs),
    )
