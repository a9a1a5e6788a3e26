"""Task workers (issue 14): round trip, throughput, idle worker memory, broker size.

    python -m benchmarks.workers [--quick] [--out FILE.json]     (from the repo root)

- no-op round trip, submit to result, one at a time, on SQLite with one worker
  process: p50 and p99 (target p50 <= 5 ms);
- throughput of N no-op runs (`.map`) with 2 worker processes, beside
  `ProcessPoolTaskRunner(max_workers=2)` on the same N in the same run (target
  >= 1,000 runs/s);
- RSS of an idle worker process (serving the benchmark tasks, nothing to do);
- size of a SQLite broker holding 100,000 queued no-op runs (file and WAL).

Workers are `python -m asyncflow worker benchmarks._tasks --broker sqlite:///...`
processes, stopped with SIGTERM at the end; each scenario gets a fresh broker file.

`python -m benchmarks --only workers` runs the same measurements as table rows
(`worker_rows`, beside the broker's own rows from `benchmarks/broker.py`), with
`cfg.repeats` samples each and the throughput interleaved with, and as a ratio to,
`ProcessPoolTaskRunner(max_workers=2)`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from asyncflow.task_runners import ProcessPoolTaskRunner, WorkerTaskRunner

from ._harness import Config, Row, Stats, Target, clock, compare
from ._tasks import noop

US = 1e6
ROUND_TRIP_TARGET = Target("p50 ≤ 5 ms", 5.0, on="value")
THROUGHPUT_TARGET = Target("≥ 1,000 runs/s (≤ 1,000 µs/run)", 1000.0, on="value")

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def workers(url: str, n: int, limit: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "asyncflow", "worker", "benchmarks._tasks", "--broker", url]
    procs = [
        subprocess.Popen([*cmd, "--limit", str(limit), "--log-level", "WARNING"], cwd=ROOT, env=env)
        for _ in range(n)
    ]
    try:
        with WorkerTaskRunner(url):  # every worker is up once each has answered once
            noop.map(range(4 * n)).result(timeout=60)
        yield procs
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)


def fresh_url(directory: str) -> str:
    return f"sqlite:///{directory}/{uuid.uuid4().hex}.db"


def round_trip(directory: str, n: int) -> dict[str, float]:
    url = fresh_url(directory)
    samples = []
    with workers(url, 1, 10), WorkerTaskRunner(url):
        for i in range(50):  # warm-up
            noop.submit(i).result()
        for i in range(n):
            start = time.perf_counter()
            noop.submit(i).result()
            samples.append((time.perf_counter() - start) * 1e3)
    samples.sort()
    return {
        "p50_ms": statistics.median(samples),
        "p99_ms": samples[int(0.99 * (len(samples) - 1))],
        "n": n,
    }


def throughput(directory: str, n: int) -> dict[str, float]:
    url = fresh_url(directory)
    with workers(url, 2, 50), WorkerTaskRunner(url):
        start = time.perf_counter()
        assert noop.map(range(n)).result() == list(range(n))
        ours = n / (time.perf_counter() - start)
    with ProcessPoolTaskRunner(max_workers=2):
        start = time.perf_counter()
        assert noop.map(range(n)).result() == list(range(n))
        pool = n / (time.perf_counter() - start)
    return {"workers_runs_per_s": ours, "process_pool_runs_per_s": pool, "n": n}


def idle_rss(directory: str) -> dict[str, float]:
    url = fresh_url(directory)
    with workers(url, 1, 10) as (proc,):
        time.sleep(1.0)  # idle: nothing queued
        with open(f"/proc/{proc.pid}/status") as fh:
            rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
    return {"idle_worker_rss_mib": rss / 1024}


def broker_size(directory: str, n: int) -> dict[str, float]:
    from asyncflow._taskworkers._channel import acquire, release
    from asyncflow._taskworkers._wire import Call, encode_call

    url = fresh_url(directory)
    ch = acquire(url)
    data = encode_call(Call("benchmarks._tasks:noop", "noop", None, {"x": 0}))
    start = time.perf_counter()
    for _ in range(n):
        run_id = uuid.uuid4().hex
        ch.broker.enqueue(
            run_id, "benchmarks._tasks:noop", ch.seal(run_id, data, "noop", None), max_deliveries=3
        )
    elapsed = time.perf_counter() - start
    release(ch)
    path = Path(url[len("sqlite:///") :])
    files = [path, path.with_name(path.name + "-wal")]
    size = sum(f.stat().st_size for f in files if f.exists())
    return {"queued": n, "broker_mib": size / 2**20, "enqueue_per_s": n / elapsed}


def _round_trip_samples(url: str, n: int) -> list[float]:
    samples = []
    with WorkerTaskRunner(url):
        for i in range(20):  # warm-up
            noop.submit(i).result()
        for i in range(n):
            start = time.perf_counter()
            noop.submit(i).result()
            samples.append((time.perf_counter() - start) * 1e3)
    return sorted(samples)


def worker_rows(cfg: Config) -> Iterator[Row]:
    """The rows of `python -m benchmarks --only workers` (see the module docstring)."""
    with tempfile.TemporaryDirectory() as directory:
        url = fresh_url(directory)
        trips = cfg.pick(200, 1000)
        with workers(url, 1, 10):
            runs = [_round_trip_samples(url, trips) for _ in range(cfg.repeats)]
        p50 = Stats(tuple(statistics.median(r) for r in runs))
        p99 = Stats(tuple(r[int(0.99 * (len(r) - 1))] for r in runs))
        case = "no-op round trip (submit to result), SQLite, 1 worker process"
        yield Row("workers", f"{case}: p50", "ms", p50, n=trips, target=ROUND_TRIP_TARGET)
        yield Row("workers", f"{case}: p99", "ms", p99, n=trips)

        n = cfg.pick(1_000, 10_000)
        url = fresh_url(directory)

        def ours() -> None:
            with WorkerTaskRunner(url):
                assert noop.map(range(n)).result() == list(range(n))

        def pool() -> None:
            with ProcessPoolTaskRunner(max_workers=2):
                assert noop.map(range(n)).result() == list(range(n))

        with workers(url, 2, 50):
            a, b, ratio = compare(clock(ours), clock(pool), cfg.repeats, scale=US / n)
        yield Row(
            "workers",
            ".map of no-ops, 2 worker processes (running already) vs the pool (started)",
            "µs/run",
            a,
            b,
            "ProcessPoolTaskRunner(2)",
            n=n,
            target=THROUGHPUT_TARGET,
            ratio=ratio,
        )
        rss = idle_rss(directory)["idle_worker_rss_mib"]
        yield Row("workers", "RSS of an idle worker process", "MiB", Stats((rss,)))
        if cfg.quick:  # 100,000 enqueues take a minute: full mode only
            return
        queued = 100_000
        size = broker_size(directory, queued)["broker_mib"]
        yield Row(
            "workers",
            "SQLite broker file holding N queued no-op runs",
            "MiB",
            Stats((size,)),
            n=queued,
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.workers")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    quick = args.quick
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as directory:
        results["round_trip"] = round_trip(directory, 200 if quick else 1000)
        print("round trip", results["round_trip"], flush=True)
        results["throughput"] = throughput(directory, 1000 if quick else 10_000)
        print("throughput", results["throughput"], flush=True)
        results["idle_rss"] = idle_rss(directory)
        print("idle worker", results["idle_rss"], flush=True)
        results["broker_size"] = broker_size(directory, 10_000 if quick else 100_000)
        print("broker size", results["broker_size"], flush=True)
    results["load_average"] = os.getloadavg()
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
