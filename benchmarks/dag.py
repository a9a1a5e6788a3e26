"""Dependent tasks: a chain (each run takes the previous future) and a fan-out /
fan-in DAG (1 -> 1000 -> 1). The baseline is asyncflow's own independent-task cost
(no-op submit+result, same runner, same number of runs): the target is that
dependencies cost at most 2x per task.
"""

from __future__ import annotations

from collections.abc import Iterator

from asyncflow.task_runners import ThreadPoolTaskRunner

from ._harness import Config, Row, Target, clock, compare
from ._tasks import gather_all, inc, noop
from .threads import MAX_WORKERS, asyncflow_submit, warm_up

__all__ = ("chain_rows", "fanout_rows")

DAG_TARGET = Target("≤ 2x independent tasks", 2.0)
US = 1e6
FAN = 1000


def chain_rows(cfg: Config) -> Iterator[Row]:
    n = cfg.pick(2_000, 10_000)

    def chain() -> None:
        with ThreadPoolTaskRunner(max_workers=MAX_WORKERS):
            fut = inc.submit(0)
            for _ in range(n - 1):
                fut = inc.submit(fut)
            assert fut.result() == n

    warm_up()
    ours, theirs, ratio = compare(clock(chain), asyncflow_submit(n), cfg.repeats, scale=US / n)
    yield Row(
        "chain",
        "chain of dependent tasks (each takes the previous future)",
        "µs/task",
        ours,
        theirs,
        "independent asyncflow tasks",
        n=n,
        target=DAG_TARGET,
        ratio=ratio,
    )


def fanout_rows(cfg: Config) -> Iterator[Row]:
    dags = cfg.pick(2, 10)  # DAGs per sample, for a sample long enough to time
    runs = dags * (FAN + 2)

    def fan() -> None:
        with ThreadPoolTaskRunner(max_workers=MAX_WORKERS):
            for _ in range(dags):
                root = noop.submit(0)
                mids = [inc.submit(root) for _ in range(FAN)]
                assert gather_all.submit(mids).result() == FAN

    warm_up()
    ours, theirs, ratio = compare(clock(fan), asyncflow_submit(runs), cfg.repeats, scale=US / runs)
    yield Row(
        "fanout",
        f"1 -> {FAN} -> 1 DAG, {dags} per sample",
        "µs/task",
        ours,
        theirs,
        "independent asyncflow tasks",
        n=runs,
        target=DAG_TARGET,
        ratio=ratio,
    )
