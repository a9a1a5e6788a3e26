"""The example's worker, as a script (the same as `asyncflow worker tasks ...`).

python worker.py --broker sqlite:///jobs.db
"""

from __future__ import annotations

import argparse

import tasks

import asyncflow

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", default="sqlite:///jobs.db")
    parser.add_argument("--limit", type=int, default=4)
    args = parser.parse_args()
    asyncflow.serve(tasks.fetch, tasks.report, broker=args.broker, limit=args.limit)
