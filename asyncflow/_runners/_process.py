"""`ProcessPoolTaskRunner`: tasks in worker processes (issue #4 builds it out)."""

from __future__ import annotations

from .._core import _engine
from ._base import TaskRunner

__all__ = ("ProcessPoolTaskRunner",)


class ProcessPoolTaskRunner(TaskRunner):
    """Runs tasks in worker processes. Not available yet: raises NotImplementedError."""

    def __init__(self, max_workers: int | None = None) -> None:
        raise NotImplementedError("ProcessPoolTaskRunner is not implemented yet (issue #4)")

    def duplicate(self) -> ProcessPoolTaskRunner:
        raise NotImplementedError

    def _start_resources(self) -> None:
        raise NotImplementedError

    def _stop_resources(self) -> None:
        raise NotImplementedError

    def start_run(self, run: _engine.Run) -> None:
        raise NotImplementedError
