"""Task worker runners for tests: a `WorkerTaskRunner` that brings its own workers.

`InProcessWorkers` serves from a fresh `memory://` broker with one `TaskWorker` on a
thread of this process; `SubprocessWorkers` from a fresh SQLite file with worker
processes started by the CLI (`python -m asyncflow worker ...`). Each starts its
workers when it is entered and stops them (SIGTERM for processes) when it exits, so
the leak check sees nothing left; `duplicate()` (a flow's runner) brings its own.
Leases are short (`LEASE` s) so that redelivery tests are quick.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

from asyncflow._taskworkers import TaskWorker, WorkerTaskRunner

TESTS = Path(__file__).resolve().parent
LEASE = 1.0
GRACE = 0.5  # a stopped worker hands back what still runs after this long
MODULES = ("conformance.tasks", "helpers", "workers_tasks")  # what test workers serve


def served_tasks() -> list[Any]:
    import importlib

    from asyncflow._taskworkers._cli import tasks_in

    for module in MODULES:
        importlib.import_module(module)
    return [t for module in MODULES for t in tasks_in(module)]


class InProcessWorkers(WorkerTaskRunner):
    """Workers on a thread of this process, through a `memory://` broker of their own."""

    def __init__(self, slots: int, **options: Any) -> None:
        super().__init__(f"memory://tests-{uuid.uuid4().hex}", **options)
        self.slots = slots
        self.options = options
        self._worker: TaskWorker | None = None
        self._thread: threading.Thread | None = None

    def duplicate(self) -> InProcessWorkers:
        return type(self)(self.slots, **self.options)

    def _start_resources(self) -> None:
        super()._start_resources()
        worker = self._worker = TaskWorker(
            served_tasks(),
            self.broker_url,
            limit=self.slots,
            lease_seconds=LEASE,
            grace_seconds=GRACE,
        )
        self._thread = threading.Thread(
            target=lambda: asyncio.run(worker.serve()), name="tests-task-worker"
        )
        self._thread.start()

    def _stop_resources(self) -> None:
        try:
            super()._stop_resources()
        finally:
            if self._worker is not None:
                self._worker.stop()
            if self._thread is not None:
                self._thread.join(10)
                assert not self._thread.is_alive(), "the in-process task worker did not stop"


def worker_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])}


def start_worker_process(
    url: str, slots: int, *modules: str, lease: float = LEASE, grace: float = GRACE
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asyncflow",
            "worker",
            *(modules or MODULES),
            "--broker",
            url,
            "--limit",
            str(slots),
            "--lease",
            str(lease),
            "--grace",
            str(grace),
            "--log-level",
            "WARNING",
        ],
        cwd=TESTS,
        env=worker_env(),
    )


def stop_worker_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM, then the exit code (killed if it does not exit in `timeout` s)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


class SubprocessWorkers(WorkerTaskRunner):
    """Worker processes (the CLI) through a SQLite file of their own. A supervisor
    thread restarts a worker that dies (as a deployment's restart policy would)."""

    def __init__(self, slots: int, processes: int = 1, **options: Any) -> None:
        self.directory = tempfile.mkdtemp(prefix="asyncflow-workers-")
        super().__init__(f"sqlite:///{self.directory}/broker.db", **options)
        self.slots = slots
        self.processes = processes
        self.options = options
        self.workers: list[subprocess.Popen[bytes]] = []
        self.restarts = 0
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    def duplicate(self) -> SubprocessWorkers:
        return type(self)(self.slots, self.processes, **self.options)

    def _start(self) -> subprocess.Popen[bytes]:
        assert self.broker_url is not None
        return start_worker_process(self.broker_url, max(1, self.slots // self.processes))

    def _start_resources(self) -> None:
        super()._start_resources()
        self.workers = [self._start() for _ in range(self.processes)]
        self._stopping.clear()
        self._supervisor = threading.Thread(target=self._supervise, name="tests-supervisor")
        self._supervisor.start()

    def _supervise(self) -> None:
        while not self._stopping.wait(0.05):  # polling exit codes (Popen has no callback)
            for i, proc in enumerate(self.workers):
                if proc.poll() is not None and not self._stopping.is_set():
                    self.workers[i] = self._start()
                    self.restarts += 1

    def _stop_resources(self) -> None:
        try:
            super()._stop_resources()
        finally:
            self._stopping.set()
            if self._supervisor is not None:
                self._supervisor.join()
            codes = [stop_worker_process(proc) for proc in self.workers]
            assert codes == [0] * len(codes), f"task workers exited with {codes}"
