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
import time
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


def peek(url: str, method: str, *args: Any) -> Any:
    """`broker.method(*args)` on a broker opened for this one call (then closed)."""
    from asyncflow._taskworkers._channel import acquire, release

    ch = acquire(url)
    try:
        return getattr(ch.broker, method)(*args)
    finally:
        release(ch)


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


def catches_sigterm(pid: int) -> bool:
    """Has process `pid` installed a SIGTERM handler (the `SigCgt` mask in /proc)?"""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:  # gone
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1)


def stop_worker_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM once the worker handles it, then the exit code (killed if it does not
    exit in `timeout` s). Waiting for the handler is what makes "exits 0" a fair
    demand: a worker still starting its interpreter (just restarted by a supervisor)
    dies of SIGTERM like any Python program, before asyncflow's CLI runs."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and not catches_sigterm(proc.pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"task worker {proc.pid} never installed its SIGTERM handler")
        time.sleep(0.005)  # polling /proc (it has no notification), bounded by `timeout`
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


class WorkerProcesses:
    """`processes` worker processes (the CLI) on the broker at `url`, `slots` runs in
    all. A supervisor thread restarts one that dies (as a deployment's restart policy
    would); `stop()` sends SIGTERM and checks that each exits 0."""

    def __init__(self, url: str, slots: int, processes: int = 1) -> None:
        self.url = url
        self.slots = slots
        self.processes = processes
        self.workers: list[subprocess.Popen[bytes]] = []
        self.restarts = 0
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    def _start_one(self) -> subprocess.Popen[bytes]:
        return start_worker_process(self.url, max(1, self.slots // self.processes))

    def start(self, ready: bool = False) -> WorkerProcesses:
        """Start them; `ready`: return once one has executed a run (it is claiming)."""
        self.workers = [self._start_one() for _ in range(self.processes)]
        self._stopping.clear()
        self._supervisor = threading.Thread(target=self._supervise, name="tests-supervisor")
        self._supervisor.start()
        if ready:
            from helpers import WAIT, ident

            with WorkerTaskRunner(self.url):
                assert ident.submit("ready").result(timeout=2 * WAIT) == "ready"
        return self

    def _supervise(self) -> None:
        while not self._stopping.wait(0.05):  # polling exit codes (Popen has no callback)
            for i, proc in enumerate(self.workers):
                if proc.poll() is not None and not self._stopping.is_set():
                    self.workers[i] = self._start_one()
                    self.restarts += 1

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join()
        codes = [stop_worker_process(proc) for proc in self.workers]
        bad = [(p.pid, code) for p, code in zip(self.workers, codes, strict=True) if code != 0]
        assert not bad, f"task workers exited with {bad}"


def sqlite_url() -> str:
    return f"sqlite:///{tempfile.mkdtemp(prefix='asyncflow-workers-')}/broker.db"


class SubprocessWorkers(WorkerTaskRunner):
    """A runner that brings its own `WorkerProcesses` on a SQLite file of its own."""

    def __init__(self, slots: int, processes: int = 1, **options: Any) -> None:
        super().__init__(sqlite_url(), **options)
        self.slots = slots
        self.processes = processes
        self.options = options
        self.pool: WorkerProcesses | None = None

    def duplicate(self) -> SubprocessWorkers:
        return type(self)(self.slots, self.processes, **self.options)

    @property
    def workers(self) -> list[subprocess.Popen[bytes]]:
        return [] if self.pool is None else self.pool.workers

    @property
    def restarts(self) -> int:
        return 0 if self.pool is None else self.pool.restarts

    def _start_resources(self) -> None:
        super()._start_resources()
        assert self.broker_url is not None
        self.pool = WorkerProcesses(self.broker_url, self.slots, self.processes).start()

    def _stop_resources(self) -> None:
        try:
            super()._stop_resources()
        finally:
            if self.pool is not None:
                self.pool.stop()


class ThreadWorker:
    """A `TaskWorker` (lease `LEASE` unless given) on a thread of this process, stopped on exit."""

    def __init__(self, url: str, *tasks: Any, limit: int = 2, **options: Any) -> None:
        from helpers import WAIT

        self.wait = WAIT
        options.setdefault("lease_seconds", LEASE)
        self.worker = TaskWorker(tasks, url, limit=limit, **options)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.worker.serve()), name="tests-task-worker"
        )

    def __enter__(self) -> TaskWorker:
        self.thread.start()
        return self.worker

    def __exit__(self, *exc: object) -> None:
        self.worker.stop()
        self.thread.join(self.wait)
        assert not self.thread.is_alive()
