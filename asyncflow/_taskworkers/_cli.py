"""`asyncflow worker module:task [module:task | module ...] --broker URL --limit N`.

A bare `module` serves every task defined at the top level of that module, and the
module whole: a message for a task it no longer has fails with an error naming both
(see `TaskWorker`). `--any` serves every task, importing modules on demand. The
worker runs until SIGTERM or SIGINT, then shuts down cleanly and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from ._worker import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_KEEP_RESULTS_SECONDS,
    DEFAULT_LEASE_SECONDS,
    TaskWorker,
)

__all__ = ("main",)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asyncflow", description="asyncflow's command line")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser(
        "worker", help="execute tasks sent through a broker (docs/workers.md)"
    )
    worker.add_argument(
        "tasks", nargs="*", metavar="module:task", help="tasks to serve ('module' alone: all)"
    )
    worker.add_argument(
        "--any",
        action="store_true",
        help="serve every task sent, importing its module on demand (docs/workers.md: security)",
    )
    worker.add_argument("--broker", default=None, help="broker URL (default: ASYNCFLOW_BROKER_URL)")
    worker.add_argument("--limit", type=int, default=10, help="runs at once (default 10)")
    worker.add_argument(
        "--lease",
        type=float,
        default=DEFAULT_LEASE_SECONDS,
        help="lease seconds of runs whose runner sets none (default 30)",
    )
    worker.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE_SECONDS,
        help="seconds to finish held runs on SIGTERM/SIGINT (default 30)",
    )
    worker.add_argument(
        "--keep-results",
        type=_keep_seconds,
        default=DEFAULT_KEEP_RESULTS_SECONDS,
        metavar="SECONDS",
        help="how long final runs and results stay in the broker (default 86400; 0: for good)",
    )
    worker.add_argument("--name", default=None, help="this worker's name (default host:pid:id)")
    worker.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser


def _keep_seconds(text: str) -> float | None:
    seconds = float(text)
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0 keeps them for good), got {text!r}")
    return seconds or None


def tasks_in(spec: str) -> list[Any]:
    """`module:task` as it is; a bare `module`: every task at its top level."""
    if ":" in spec:
        return [spec]
    module = importlib.import_module(spec)
    found = [
        value
        for name, value in vars(module).items()
        if callable(getattr(value, "submit", None))
        and getattr(getattr(value, "fn", None), "__qualname__", None) == name
        and getattr(value.fn, "__module__", None) == spec
    ]
    if not found:
        raise SystemExit(f"asyncflow worker: module {spec!r} defines no task")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.tasks and not args.any:
        raise SystemExit("asyncflow worker: name the tasks or modules to serve, or pass --any")
    # A SIGTERM while the tasks' modules import must still mean "stop cleanly, exit 0".
    early: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: early.append(signum))
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    sys.path.insert(0, "")  # as `python -m`: modules in the current directory import
    tasks = [t for spec in args.tasks for t in tasks_in(spec)]
    worker = TaskWorker(
        tasks,
        args.broker,
        limit=args.limit,
        lease_seconds=args.lease,
        grace_seconds=args.grace,
        name=args.name,
        modules=[spec for spec in args.tasks if ":" not in spec],
        import_any=args.any,
        keep_results_seconds=args.keep_results,
    )
    for sig in (signal.SIGTERM, signal.SIGINT):  # until `serve` installs its own
        signal.signal(sig, lambda signum, frame: worker.stop())
    if early:
        return 0
    asyncio.run(worker.serve(handle_signals=True))
    return 0
