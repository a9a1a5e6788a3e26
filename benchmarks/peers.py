"""`--peers prefect,dask`: the no-op submit+result scenario on other systems, when
installed (skipped with a note when not). The baseline column is the peer; the
asyncflow column is the thread runner on the same N.

- dask: `distributed.Client(processes=False)` with one worker of 4 threads,
  `client.submit(f, i, pure=False)` then `.result()` on each.
- prefect: `@flow(task_runner=ThreadPoolTaskRunner(max_workers=4))` submitting `@task`s
  (Prefect starts its own ephemeral API server; its start-up is not timed).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Iterator
from typing import Any

from ._harness import Config, Row, clock, compare, unavailable
from ._tasks import noop_raw
from .threads import MAX_WORKERS, asyncflow_submit, warm_up

__all__ = ("KNOWN", "peer_rows")

US = 1e6


def _dask(n: int) -> tuple[Callable[[], float], Callable[[], None]]:
    from distributed import Client

    for name in ("distributed", "tornado", "bokeh"):
        logging.getLogger(name).setLevel(logging.ERROR)
    client = Client(
        processes=False,
        n_workers=1,
        threads_per_worker=MAX_WORKERS,
        dashboard_address=None,
    )

    def run() -> None:
        futures = [client.submit(noop_raw, i, pure=False) for i in range(n)]
        for fut in futures:
            fut.result()

    return clock(run), client.close


def _prefect(n: int) -> tuple[Callable[[], float], Callable[[], None]]:
    from prefect import flow, task
    from prefect.task_runners import ThreadPoolTaskRunner

    ptask: Any = task(noop_raw)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=MAX_WORKERS))  # type: ignore[misc]
    def pflow(k: int) -> None:
        futures = [ptask.submit(i) for i in range(k)]
        for fut in futures:
            fut.result()

    pflow(1)  # starts the ephemeral server outside the timed runs
    return clock(lambda: pflow(n)), lambda: None


KNOWN: dict[str, tuple[Callable[[int], tuple[Callable[[], float], Callable[[], None]]], int]] = {
    # peer: (set-up returning (sampler, close), N per (quick, full) mode scale)
    "dask": (_dask, 20),
    "prefect": (_prefect, 100),
}


def peer_rows(cfg: Config, names: list[str]) -> Iterator[Row]:
    for name in names:
        case = f"no-op submit+result vs {name}"
        if name not in KNOWN:
            yield unavailable("peer", case, f"unknown peer (known: {', '.join(KNOWN)})")
            continue
        if importlib.util.find_spec(name) is None:
            print(f"note: {name} is not installed; skipping its peer scenario")
            yield unavailable("peer", case, f"{name} is not installed")
            continue
        setup, divisor = KNOWN[name]
        n = cfg.pick(10_000, 100_000) // divisor  # peers cost 10-1000x more per task
        warm_up()
        try:
            sampler, close = setup(n)
        except Exception as exc:  # a peer that cannot start is reported, not fatal
            yield unavailable("peer", case, f"{type(exc).__name__}: {exc}")
            continue
        try:
            ours, theirs, ratio = compare(asyncflow_submit(n), sampler, cfg.repeats, scale=US / n)
        finally:
            close()
        yield Row(
            "peer",
            case,
            "µs/task",
            ours,
            theirs,
            name,
            n=n,
            ratio=ratio,
        )
