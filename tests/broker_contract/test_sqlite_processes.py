"""Several processes share one SQLite broker file: no run is claimed twice under a live
lease, none is lost, and exactly one ack wins.

The children are scripts (`_sqlite_child.py`) started with subprocess; each reports
what it saw in a file, read back here. They start together at a file gate, after
each has opened the database."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from asyncflow._broker import RunStatus
from asyncflow._broker._sqlite import SQLiteBroker

CHILD = Path(__file__).with_name("_sqlite_child.py")
TIMEOUT = 60.0


def start(mode: str, db: Path, go: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(CHILD), mode, str(db), str(go), str(out), *extra])


def wait_ready(outs: list[Path]) -> None:
    deadline = time.monotonic() + TIMEOUT / 2
    while not all(Path(f"{out}.ready").exists() for out in outs):
        assert time.monotonic() < deadline, "a child never opened the database"
        time.sleep(0.005)  # a gate between processes: polls, returns once all are ready


def finish(procs: list[subprocess.Popen[bytes]]) -> None:
    try:
        for proc in procs:
            assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def events(outs: list[Path]) -> list[tuple[str, str, str, str]]:
    """(process, event, run id, detail) for every line the children wrote."""
    return [
        (out.name, *line.split(" ", 2))  # type: ignore[misc]  # three fields per line
        for out in outs
        for line in out.read_text().splitlines()
        if line
    ]


@pytest.mark.timeout(120)
def test_four_workers_claim_and_ack_1000_runs_from_one_file(tmp_path: Path) -> None:
    db, go = tmp_path / "broker.db", tmp_path / "go"
    broker = SQLiteBroker(db)
    runs = [f"run-{i}" for i in range(1000)]
    outs = [tmp_path / f"worker-{i}" for i in range(4)]
    procs = [start("work", db, go, out) for out in outs]
    try:
        wait_ready(outs)
        for run_id in runs[:500]:
            broker.enqueue(run_id, ("m:a", "m:b")[len(run_id) % 2], b"p" * 200, max_deliveries=3)
        go.touch()
        for run_id in runs[500:]:  # the submitter keeps enqueueing while workers claim
            broker.enqueue(run_id, ("m:a", "m:b")[len(run_id) % 2], b"p" * 200, max_deliveries=3)
        (tmp_path / "done").touch()
        finish(procs)
        seen = events(outs)
        claims = Counter(run_id for _, kind, run_id, _ in seen if kind == "claim")
        assert set(claims) == set(runs)  # none lost
        assert max(claims.values()) == 1  # none claimed twice under a live lease
        acks = [(proc, run_id, ok) for proc, kind, run_id, ok in seen if kind == "ack"]
        assert sorted(run_id for _, run_id, _ in acks) == sorted(runs)
        assert all(ok == "True" for _, _, ok in acks)
        assert len({proc for proc, _, _ in acks}) > 1  # the work really was shared
        outcomes = broker.outcomes(runs)
        assert [o.run_id for o in outcomes] == runs
        assert all(o.status is RunStatus.DONE and o.deliveries == 1 for o in outcomes)
    finally:
        finish(procs)
        broker.close()


@pytest.mark.timeout(120)
def test_exactly_one_of_three_racing_acks_wins(tmp_path: Path) -> None:
    db, go = tmp_path / "broker.db", tmp_path / "go"
    broker = SQLiteBroker(db)
    try:
        for i in range(300):
            broker.enqueue(f"run-{i}", "m:a", b"p", max_deliveries=1)
        held = broker.claim("parent", ["m:a"], lease_seconds=600, limit=300)
        assert len(held) == 300
        claims = tmp_path / "claims.json"
        claims.write_text(json.dumps([(d.run_id, d.token) for d in held]))
        outs = [tmp_path / f"acker-{i}" for i in range(3)]
        procs = [start("ack", db, go, out, str(claims)) for out in outs]
        wait_ready(outs)
        go.touch()
        finish(procs)
        winners = {run_id: proc for proc, _, run_id, ok in events(outs) if ok == "True"}
        tries = Counter(run_id for _, _, run_id, _ in events(outs))
        assert set(tries.values()) == {3}
        assert sorted(winners) == sorted(d.run_id for d in held)
        wins = Counter(run_id for _, _, run_id, ok in events(outs) if ok == "True")
        assert set(wins.values()) == {1}  # exactly one ack per run
        for outcome in broker.outcomes(list(winners)):
            assert outcome.result is not None
            assert outcome.result.decode().endswith(f":{outcome.run_id}")
    finally:
        broker.close()
