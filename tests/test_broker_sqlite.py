"""What only the SQLite broker has: its file, connections, schema, close and fork."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from asyncflow._broker import RunStatus
from asyncflow._broker._sqlite import SQLiteBroker


def test_the_file_is_in_wal_mode_and_survives_reopening(tmp_path: Path) -> None:
    broker = SQLiteBroker(tmp_path / "b.db")
    broker.enqueue("r1", "m:f", b"p", max_deliveries=2)
    broker.close()
    conn = sqlite3.connect(tmp_path / "b.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()
    again = SQLiteBroker(tmp_path / "b.db")
    try:
        assert again.status("r1") is RunStatus.QUEUED
        (delivery,) = again.claim("w", ["m:f"], lease_seconds=5, limit=1)
        assert delivery.payload == b"p"
        _, cursor = again.finished_since(None)
        assert again.ack(delivery, b"done")
    finally:
        again.close()
    third = SQLiteBroker(tmp_path / "b.db")
    try:  # a cursor stays valid across processes and restarts
        (outcome,), _ = third.finished_since(cursor)
        assert (outcome.run_id, outcome.result) == ("r1", b"done")
    finally:
        third.close()


def test_a_closed_broker_says_so(tmp_path: Path) -> None:
    broker = SQLiteBroker(tmp_path / "b.db")
    broker.close()
    with pytest.raises(RuntimeError, match=r"SQLiteBroker .*b\.db.* is closed"):
        broker.status("r1")
    broker.close()  # twice is fine


def test_each_thread_has_its_own_connection_and_dead_ones_are_closed(tmp_path: Path) -> None:
    broker = SQLiteBroker(tmp_path / "b.db")
    try:

        def use() -> None:
            broker.status("r1")

        threads = [threading.Thread(target=use, name=f"broker-user-{i}") for i in range(3)]
        for thread in threads:  # one after another: each new connection prunes the dead
            thread.start()
            thread.join(10)
        assert set(broker._conns) == {threading.current_thread(), threads[-1]}
    finally:
        broker.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    SQLiteBroker(tmp_path / "b.db").close()
    conn = sqlite3.connect(tmp_path / "b.db")
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(RuntimeError, match="schema version 99"):
        SQLiteBroker(tmp_path / "b.db")


def test_a_bad_synchronous_setting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteBroker(tmp_path / "b.db", synchronous="sometimes")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.timeout(60)
def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    # In a fresh interpreter: forking the test process (with its threads) is unsafe.
    script = textwrap.dedent(
        """
        import os, sys
        from asyncflow._broker._sqlite import SQLiteBroker
        broker = SQLiteBroker(sys.argv[1])
        broker.enqueue("parent", "m:f", b"p", max_deliveries=1)
        parent_conn = broker._conns[next(iter(broker._conns))]
        pid = os.fork()
        if pid == 0:
            try:
                broker.enqueue("child", "m:f", b"c", max_deliveries=1)
                ok = broker._state.conn is not parent_conn
                broker.close()  # closes the child's connection, never the parent's
                os._exit(0 if ok else 3)
            except BaseException:
                os._exit(4)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert broker.status("child") is not None  # the parent's connection still works
        broker.close()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "b.db")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_every_query_uses_an_index(tmp_path: Path) -> None:
    """No statement the broker runs scans the whole table (an ORDER BY or a MAX()
    can make SQLite's planner give up an index, silently, costing O(runs) a call)."""
    broker = SQLiteBroker(tmp_path / "b.db", clock=lambda: clock[0])
    clock = [1000.0]
    statements: list[str] = []
    broker._conn().set_trace_callback(statements.append)
    try:
        for i in range(6):
            broker.enqueue(f"r{i}", "m:f", b"p", max_deliveries=2)
        first, second, third, fourth = broker.claim("w", ["m:f", "m:g"], lease_seconds=5, limit=4)
        broker.renew(first, 5)
        broker.ack(first, b"v")
        broker.dead_letter(second, "why")
        broker.release(third)
        broker.cancel("r4")
        broker.cancel(fourth.run_id)
        clock[0] += 10
        broker.outcomes(["r0", "r1", "r5"])
        broker.claim("w", ["m:f"], lease_seconds=5, limit=1)
        broker.enqueue("r6", "m:g", b"p", max_deliveries=2)
        broker.enqueue("r7", "n:h", b"p", max_deliveries=2)
        broker.claim("w", [], lease_seconds=5, limit=1, modules=["m"])
        broker.claim("w", [], lease_seconds=5, limit=2, any_key=True)
        broker.claim("w", [], lease_seconds=5, limit=2, any_key=True)  # the empty read
        broker.claim("w", [], lease_seconds=5, limit=2, modules=["m"])  # the empty read
        broker.finished_since(None)
        broker.finished_since(0)
        broker.status("r0")
        broker.wait(0)
        plans = {}
        conn = sqlite3.connect(tmp_path / "b.db")
        for sql in set(statements):
            if sql.split(" ", 1)[0].upper() in ("SELECT", "UPDATE", "DELETE"):
                plan = conn.execute(f"EXPLAIN QUERY PLAN {sql}", [None] * sql.count("?"))
                plans[sql] = [row[3] for row in plan]
        conn.close()
        assert len(plans) >= 10  # the workload reached the hot queries
        scans = {sql: plan for sql, plan in plans.items() if any("SCAN runs" in p for p in plan)}
        assert not scans
    finally:
        broker.close()
