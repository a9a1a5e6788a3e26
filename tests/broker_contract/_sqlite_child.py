"""A child process of test_sqlite_processes.py (run as a script, not collected).

`work DB GO OUT`: claim and ack runs until none is queued and GO/done exists; write
one line per event to OUT ("claim RUN TOKEN", "ack RUN True|False").
`ack DB GO OUT RUNS`: ack every (run id, token) pair in the JSON file RUNS with this
process's own result, as soon as GO exists; write "ack RUN True|False" lines.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from asyncflow._broker import Delivery
from asyncflow._broker._sqlite import SQLiteBroker

KEYS = ("m:a", "m:b")
GATE_WAIT = 20.0


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + GATE_WAIT
    while not path.exists():
        if time.monotonic() > deadline:
            sys.exit(f"gate {path} never opened")
        time.sleep(0.001)  # a gate between processes: returns as soon as it opens


def work(broker: SQLiteBroker, go: Path, out: list[str]) -> None:
    done = go.with_name("done")
    while True:
        all_enqueued = done.exists()  # before the claim: an empty claim after it is final
        claimed = broker.claim(f"w{os.getpid()}", KEYS, lease_seconds=600, limit=8)
        for delivery in claimed:
            out.append(f"claim {delivery.run_id} {delivery.token}")
        for delivery in claimed:
            acked = broker.ack(delivery, f"{os.getpid()}:{delivery.run_id}".encode())
            out.append(f"ack {delivery.run_id} {acked}")
        if not claimed:
            if all_enqueued:
                return
            broker.wait(0.05)


def ack_all(broker: SQLiteBroker, runs: Path, out: list[str]) -> None:
    for run_id, token in json.loads(runs.read_text()):
        delivery = Delivery(run_id, "m:a", b"", 1, token)
        acked = broker.ack(delivery, f"{os.getpid()}:{run_id}".encode())
        out.append(f"ack {run_id} {acked}")


def main() -> None:
    mode, db, go, out_path = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
    broker = SQLiteBroker(db)
    out: list[str] = []
    Path(f"{out_path}.ready").touch()
    wait_for(go)
    if mode == "work":
        work(broker, go, out)
    else:
        ack_all(broker, Path(sys.argv[5]), out)
    broker.close()
    out_path.write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
