"""The run records Prefect-form hooks and retry conditions get (`asyncflow.runs`).

Frozen snapshots, built by `_runs` only when a Prefect-form callable asks for one;
imported on first use, so `import asyncflow` does not pay for the dataclasses.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._core import State

__all__ = ("FlowRun", "TaskRun")


@dataclass(frozen=True)
class TaskRun:
    """A task run, as a Prefect-form hook or retry condition sees it (a snapshot)."""

    id: uuid.UUID
    name: str
    task_name: str
    parameters: Mapping[str, Any]
    state: State | None
    start_time: datetime | None
    end_time: datetime | None
    run_count: int
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FlowRun:
    """A flow run, as a Prefect-form flow hook sees it (a snapshot)."""

    id: uuid.UUID
    name: str
    flow_name: str
    parameters: Mapping[str, Any]
    state: State | None
    start_time: datetime | None
    end_time: datetime | None
    run_count: int
    tags: list[str] = field(default_factory=list)
