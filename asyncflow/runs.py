"""Run records: what Prefect-style hooks and retry conditions get as their middle
argument, `hook(task, task_run, state)` / `hook(flow, flow_run, state)`.

`TaskRun` and `FlowRun` are frozen snapshots: `id` (a UUID, the same for every hook of
one run), `name`, `task_name` / `flow_name`, `parameters`, `state`, `start_time` and
`end_time` (UTC datetimes; None while unknown), `run_count` (attempts so far) and
`tags` (sorted: the task's or flow's own, and those of the `with tags(...)` blocks and
flows around the call).
"""

from ._public import publish
from ._run_records import FlowRun, TaskRun

__all__ = ("FlowRun", "TaskRun")

publish(__name__, __all__, globals())
