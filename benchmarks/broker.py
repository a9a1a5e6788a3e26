"""The SQLite broker on its own (no tasks, no pickling): `python -m benchmarks.broker`.

Figures (each the median of `--repeats` samples, with [min, max]):

- enqueue rate: N enqueues of a ~200-byte payload, one transaction each;
- claim+ack rate in one process, claiming 1 and 16 runs per claim;
- claim+ack rate with 2 worker processes (claim 1 per call) sharing the file;
- the same with one connection shared by 4 threads behind a lock, against the
  broker's connection per thread (4 threads enqueueing): the design choice;
- round trip: the submitter enqueues, a worker *process* blocked in `wait` claims and
  acks, the submitter blocked in `wait` sees the outcome: p50 / p99 back to back, and
  after 50 ms idle gaps (the poll backoff at its cap);
- a submitter's look at its runs in flight: `outcomes` of all of them against
  following `finished_since`;
- file size holding 100,000 queued runs (database + WAL after a checkpoint).

No timing is asserted anywhere; the numbers go to the issue's closing note.
`broker_rows` gives the enqueue, claim+ack and watching figures as rows of
`python -m benchmarks --only workers`.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from asyncflow._broker._sqlite import SQLiteBroker

from ._harness import Config, Row, Stats, ratio_of

PAYLOAD = b"x" * 200
KEY = "bench:noop"


def _fresh(tmp: Path, name: str) -> SQLiteBroker:
    return SQLiteBroker(tmp / f"{name}-{time.perf_counter_ns()}.db")


def _fill(broker: SQLiteBroker, n: int, prefix: str = "r") -> None:
    for i in range(n):
        broker.enqueue(f"{prefix}{i}", KEY, PAYLOAD, max_deliveries=3)


def _drain(broker: SQLiteBroker, limit: int) -> int:
    done = 0
    while claimed := broker.claim("bench", [KEY], lease_seconds=60, limit=limit):
        for delivery in claimed:
            broker.ack(delivery, b"ok")
        done += len(claimed)
    return done


def enqueue_rate(tmp: Path, n: int) -> float:
    broker = _fresh(tmp, "enqueue")
    t0 = time.perf_counter()
    _fill(broker, n)
    elapsed = time.perf_counter() - t0
    broker.close()
    return n / elapsed


def claim_ack_rate(tmp: Path, n: int, limit: int) -> float:
    broker = _fresh(tmp, "claim")
    _fill(broker, n)
    t0 = time.perf_counter()
    done = _drain(broker, limit)
    elapsed = time.perf_counter() - t0
    broker.close()
    assert done == n
    return n / elapsed


def _child(args: list[str]) -> None:
    """`--child work DB GO`: drain the queue once GO exists. `--child echo DB`: claim
    and ack whatever arrives, blocking in `wait`, until the run "stop" arrives."""
    mode, db = args[0], args[1]
    broker = SQLiteBroker(db)
    if mode == "work":
        go = Path(args[2])
        while not go.exists():
            time.sleep(0.0005)  # start gate between processes
        _drain(broker, 1)
    else:
        while True:
            claimed = broker.claim("echo", [KEY], lease_seconds=60, limit=16)
            seen = time.perf_counter()  # system-wide monotonic clock on Linux and macOS
            for delivery in claimed:
                broker.ack(delivery, repr(seen).encode())
                if delivery.run_id == "stop":
                    broker.close()
                    return
            if not claimed:
                broker.wait(1.0)
    broker.close()


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.broker", "--child", *args])


def two_process_rate(tmp: Path, n: int) -> float:
    broker = _fresh(tmp, "two")
    _fill(broker, n)
    go = tmp / f"go-{time.perf_counter_ns()}"
    procs = [_spawn("work", str(broker.path), str(go)) for _ in range(2)]
    time.sleep(0.5)  # let both interpreters start and open the file before the gate
    t0 = time.perf_counter()
    go.touch()
    for proc in procs:
        proc.wait(timeout=300)
    elapsed = time.perf_counter() - t0
    left = broker.claim("check", [KEY], lease_seconds=1, limit=1)
    broker.close()
    assert not left
    return n / elapsed


class _SharedConnection(SQLiteBroker):
    """The alternative design: one connection for every thread, behind a lock."""

    _shared: Any = None

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        super().__init__(path)

    def _conn(self) -> Any:
        if self._shared is None:
            self._shared = self._connect()
        return self._shared

    def enqueue(self, run_id: str, task_key: str, payload: bytes, *, max_deliveries: int) -> None:
        with self._lock:
            super().enqueue(run_id, task_key, payload, max_deliveries=max_deliveries)

    def close(self) -> None:
        self._shared.close()
        super().close()


def threads_enqueue_rate(tmp: Path, n: int, factory: Callable[[Path], SQLiteBroker]) -> float:
    broker = factory(tmp / f"threads-{time.perf_counter_ns()}.db")
    per_thread = n // 4

    def fill(k: int) -> None:
        _fill(broker, per_thread, prefix=f"t{k}-")

    threads = [threading.Thread(target=fill, args=(k,)) for k in range(4)]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - t0
    broker.close()
    return per_thread * 4 / elapsed


def round_trips(tmp: Path, n: int, gap: float) -> tuple[list[float], list[float]]:
    """Seconds from enqueue to the submitter seeing the outcome, worker in a process,
    and from enqueue to the worker's claim (its `wait` waking up)."""
    broker = _fresh(tmp, "rtt")
    echo = _spawn("echo", str(broker.path))
    samples, wakes = [], []
    try:
        warm = "warm-up"
        broker.enqueue(warm, KEY, PAYLOAD, max_deliveries=3)
        _await_outcome(broker, warm)
        for i in range(n):
            if gap:
                time.sleep(gap)
            t0 = time.perf_counter()
            broker.enqueue(f"rt{i}", KEY, PAYLOAD, max_deliveries=3)
            claimed_at = _await_outcome(broker, f"rt{i}")
            samples.append(time.perf_counter() - t0)
            wakes.append(claimed_at - t0)
        broker.enqueue("stop", KEY, PAYLOAD, max_deliveries=3)
        echo.wait(timeout=60)
    finally:
        if echo.poll() is None:
            echo.kill()
            echo.wait()
        broker.close()
    return samples, wakes


def _await_outcome(broker: SQLiteBroker, run_id: str) -> float:
    """The echo worker's perf_counter() when it claimed `run_id`."""
    deadline = time.monotonic() + 30
    while not (found := broker.outcomes([run_id])):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no outcome for {run_id}")
        broker.wait(1.0)
    return float(found[0].result or b"nan")


def thread_wakes(tmp: Path, n: int) -> list[float]:
    """Seconds from an enqueue to a `wait` in another thread of the process returning."""
    broker = _fresh(tmp, "wake")
    woke, ready = threading.Event(), threading.Event()
    stop = False
    samples: list[float] = []

    def waiter() -> None:
        while not stop:
            broker.status("none")  # the baseline
            ready.set()
            broker.wait(5.0)
            samples.append(time.perf_counter())
            woke.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    starts = []
    for i in range(n + 1):
        ready.wait()
        ready.clear()
        woke.clear()
        time.sleep(0.002)  # let the waiter settle into its poll sleep
        if i == n:
            stop = True
        starts.append(time.perf_counter())
        broker.enqueue(f"w{i}", KEY, PAYLOAD, max_deliveries=3)
        woke.wait()
    thread.join()
    broker.close()
    return [end - start for start, end in zip(starts, samples, strict=True)][:n]


def watch_costs(tmp: Path, pending: int) -> tuple[float, float]:
    """Seconds per look for a submitter with `pending` runs in flight, 10 of which
    finished since its last look: `outcomes(all ids)` against `finished_since`."""
    broker = _fresh(tmp, "watch")
    ids = [f"p{i}" for i in range(pending)]
    _fill(broker, pending, prefix="p")
    _, cursor = broker.finished_since(None)
    for run_id in ids[:10]:
        broker.cancel(run_id)
    rounds = 20
    t0 = time.perf_counter()
    for _ in range(rounds):
        broker.outcomes(ids)
    by_ids = (time.perf_counter() - t0) / rounds
    t0 = time.perf_counter()
    for _ in range(rounds):
        broker.finished_since(cursor)
    by_feed = (time.perf_counter() - t0) / rounds
    broker.close()
    return by_ids, by_feed


def file_size(tmp: Path, n: int) -> tuple[int, int]:
    broker = _fresh(tmp, "size")
    _fill(broker, n)
    wal = broker.path.with_name(broker.path.name + "-wal")
    before = broker.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    conn = sqlite3_checkpoint(broker)
    after = broker.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    del conn
    broker.close()
    return before, after


def sqlite3_checkpoint(broker: SQLiteBroker) -> object:
    conn = broker._conn()  # noqa: SLF001 -- a benchmark may reach in to checkpoint
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return conn


def _stats(samples: list[float], unit: str, digits: int = 0) -> str:
    return (
        f"{statistics.median(samples):,.{digits}f} {unit} "
        f"[{min(samples):,.{digits}f}, {max(samples):,.{digits}f}]"
    )


def _percentiles(seconds: list[float]) -> str:
    q = statistics.quantiles([s * 1e3 for s in seconds], n=100)
    return f"p50 {q[49]:.2f} ms, p99 {q[98]:.2f} ms ({len(seconds)} samples)"


def _repeat(fn: Callable[[], float], repeats: int) -> list[float]:
    return [fn() for _ in range(repeats)]


def broker_rows(cfg: Config) -> Iterator[Row]:
    """Rows for `python -m benchmarks` (run from the repository root: the 2-process
    case starts `python -m benchmarks.broker --child`)."""
    n = cfg.pick(1_000, 10_000)
    r = cfg.repeats
    with tempfile.TemporaryDirectory(prefix="asyncflow-broker-bench-") as raw:
        tmp = Path(raw)
        rate = Stats(tuple(_repeat(lambda: enqueue_rate(tmp, n), r)))
        yield Row("broker", "SQLite enqueue, one transaction each", "runs/s", rate, n=n, digits=0)
        for limit in (1, 16):
            rates = _repeat(functools.partial(claim_ack_rate, tmp, n, limit), r)
            case = f"SQLite claim({limit}) + ack, 1 process"
            yield Row("broker", case, "runs/s", Stats(tuple(rates)), n=n, digits=0)
        two = Stats(tuple(_repeat(lambda: two_process_rate(tmp, n), r)))
        yield Row("broker", "SQLite claim(1) + ack, 2 processes", "runs/s", two, n=n, digits=0)
        looks = [watch_costs(tmp, n) for _ in range(r)]
        by_feed = [feed * 1e3 for _, feed in looks]
        by_ids = [ids * 1e3 for ids, _ in looks]
        yield Row(
            "broker",
            "a submitter's look at N runs in flight (10 finished): finished_since",
            "ms",
            Stats(tuple(by_feed)),
            Stats(tuple(by_ids)),
            "outcomes(all ids)",
            n=n,
            ratio=ratio_of(by_feed, by_ids),
            digits=3,
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.broker", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small N (a smoke run)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child)
        return 0
    n = 2_000 if args.quick else 10_000
    r = args.repeats
    print(f"SQLite broker, N = {n:,}, {r} repeats, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="asyncflow-broker-bench-") as raw:
        tmp = Path(raw)
        print("enqueue:", _stats(_repeat(lambda: enqueue_rate(tmp, n), r), "runs/s"))
        for limit in (1, 16):
            rates = _repeat(functools.partial(claim_ack_rate, tmp, n, limit), r)
            print(f"claim({limit})+ack, 1 process:", _stats(rates, "runs/s"))
        two = _repeat(lambda: two_process_rate(tmp, n), r)
        print("claim(1)+ack, 2 processes:", _stats(two, "runs/s"))
        per_thread = _repeat(lambda: threads_enqueue_rate(tmp, n, SQLiteBroker), r)
        shared = _repeat(lambda: threads_enqueue_rate(tmp, n, _SharedConnection), r)
        print("enqueue, 4 threads, connection per thread:", _stats(per_thread, "runs/s"))
        print("enqueue, 4 threads, one connection + lock:", _stats(shared, "runs/s"))
        trips = 200 if args.quick else 1_000
        print("wait wake-up, another thread:", _percentiles(thread_wakes(tmp, trips // 5)))
        for gap in (0.0, 0.05):
            trip, wake = round_trips(tmp, trips if not gap else trips // 5, gap)
            print(f"round trip, worker process, idle gap {gap * 1e3:.0f} ms:", _percentiles(trip))
            print("  of which the worker's wake-up (enqueue to claim):", _percentiles(wake))
        by_ids, by_feed = watch_costs(tmp, n)
        print(
            f"a submitter's look at {n:,} runs in flight (10 finished): outcomes(ids) "
            f"{by_ids * 1e3:.2f} ms, finished_since(cursor) {by_feed * 1e3:.3f} ms"
        )
        big = 20_000 if args.quick else 100_000
        before, after = file_size(tmp, big)
        print(
            f"file size, {big:,} queued runs (200-byte payloads): {before / 2**20:.1f} MiB "
            f"with its WAL, {after / 2**20:.1f} MiB after a checkpoint "
            f"({after / big:.0f} bytes per run)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
