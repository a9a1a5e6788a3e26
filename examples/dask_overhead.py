"""Per-task overhead of DaskTaskRunner against raw `client.submit` + `client.gather`.

Runs N no-op tasks on a 2-worker LocalCluster (threads, then processes), both ways
on the same cluster in the same run, alternating, and prints microseconds per task
(the best of R rounds) and the ratio.

    python examples/dask_overhead.py [N] [R]
"""

from __future__ import annotations

import sys
import time

from distributed import Client, LocalCluster

from asyncflow import task
from asyncflow.contrib.dask import DaskTaskRunner


def noop(x: int) -> int:
    return x


noop_task = task(noop)


def raw(client: Client, n: int) -> float:
    t0 = time.perf_counter()
    futures = [client.submit(noop, i, pure=False) for i in range(n)]
    client.gather(futures)
    return time.perf_counter() - t0


def asyncflow_runner(runner: DaskTaskRunner, n: int) -> float:
    t0 = time.perf_counter()
    futures = [runner.submit(noop_task, {"x": i}) for i in range(n)]
    for f in futures:
        f.result()
    return time.perf_counter() - t0


def measure(processes: bool, n: int, rounds: int) -> tuple[float, float]:
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=processes, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
        DaskTaskRunner(cluster=cluster) as runner,
    ):
        raw(client, 50)  # warm up both paths
        asyncflow_runner(runner, 50)
        best_raw = best_af = float("inf")
        for _ in range(rounds):
            best_raw = min(best_raw, raw(client, n))
            best_af = min(best_af, asyncflow_runner(runner, n))
    return best_raw / n * 1e6, best_af / n * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    print(f"{n} no-op tasks, 2 workers x 1 thread, best of {rounds}")
    for processes in (False, True):
        raw_us, af_us = measure(processes, n, rounds)
        kind = "processes" if processes else "threads  "
        print(
            f"{kind}: raw submit+gather {raw_us:7.0f} us/task   "
            f"DaskTaskRunner submit+result {af_us:7.0f} us/task   ratio {af_us / raw_us:.2f}x"
        )


if __name__ == "__main__":
    main()
