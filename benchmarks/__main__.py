"""Command line: `python -m benchmarks [--quick] [--only a,b] [--peers dask] [--out DIR]`."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from . import (
    async_tasks,
    broker,
    dag,
    direct,
    import_time,
    loop_lag,
    memory,
    process,
    threads,
    workers,
)
from ._harness import Config, Row, unavailable
from ._report import HEADER, format_row, machine_info, write_results
from .peers import KNOWN, peer_rows

Scenario = Callable[[Config], Iterator[Row]]


def _worker_rows(cfg: Config) -> Iterator[Row]:
    yield from workers.worker_rows(cfg)
    yield from broker.broker_rows(cfg)


def _map_rows(cfg: Config) -> Iterator[Row]:
    yield from threads.map_rows(cfg)
    yield from async_tasks.map_rows(cfg)


SCENARIOS: dict[str, Scenario] = {
    "thread": threads.submit_rows,
    "async": async_tasks.submit_rows,
    "map": _map_rows,
    "chain": dag.chain_rows,
    "fanout": dag.fanout_rows,
    "direct": direct.direct_rows,
    "loop-lag": loop_lag.lag_rows,
    "import": import_time.import_rows,
    "memory": memory.pending_rows,
    "stream": memory.stream_rows,
    "scaling": threads.scaling_rows,
    "process": process.process_rows,
    "workers": _worker_rows,
}
DEFAULT_OUT = Path(__file__).parent / "results"


def _names(raw: str | None, known: dict[str, object], what: str) -> list[str]:
    if raw is None:
        return []
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="small N and 3 repeats (CI smoke run, < 2 min)"
    )
    parser.add_argument("--only", metavar="NAME[,NAME]", help=f"scenarios: {', '.join(SCENARIOS)}")
    parser.add_argument("--peers", metavar="NAME[,NAME]", help=f"also run: {', '.join(KNOWN)}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where latest.json/md go")
    parser.add_argument("--repeats", type=int, help="repeats per measurement (default 3 / 5)")
    parser.add_argument(
        "--uvloop", action="store_true", help="run the async scenarios' own loop on uvloop"
    )
    return parser.parse_args(argv)


def _run_scenario(name: str, scenario: Callable[[], Iterator[Row]]) -> Iterator[Row]:
    try:
        yield from scenario()
    except Exception as exc:  # one broken scenario must not lose the others' results
        traceback.print_exc()
        yield unavailable(name, "scenario failed", f"{type(exc).__name__}: {exc}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    only = _names(args.only, SCENARIOS, "scenario") or list(SCENARIOS)
    peers = _names(args.peers, KNOWN, "peer")
    cfg = Config(
        quick=args.quick,
        repeats=args.repeats or (3 if args.quick else 5),
        use_uvloop=args.uvloop,
    )
    mode = "quick" if args.quick else "full"
    machine = machine_info(args.uvloop)
    print(
        f"asyncflow benchmarks, {mode} mode, {cfg.repeats} repeats: {machine['cpu_model']}, "
        f"{machine['cores']} cores, {machine['python']}, load {machine['load_average_at_start']}"
    )
    print(HEADER, flush=True)
    rows: list[Row] = []
    t0 = time.perf_counter()
    jobs: list[tuple[str, Callable[[], Iterator[Row]]]] = [
        (name, lambda s=SCENARIOS[name]: s(cfg)) for name in only
    ]
    if peers:
        jobs.append(("peer", lambda: peer_rows(cfg, peers)))
    for name, job in jobs:
        for row in _run_scenario(name, job):
            rows.append(row)
            print(format_row(row), flush=True)
    seconds = time.perf_counter() - t0
    json_path, md_path = write_results(args.out, rows, machine, mode, seconds)
    misses = [r for r in rows if r.status == "MISS"]
    print(f"\n{len(rows)} rows in {seconds:.0f} s; {len(misses)} target(s) missed")
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
