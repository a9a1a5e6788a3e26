"""Task workers: runs sent through a broker to worker processes (docs/workers.md).

- `_wire`: task keys, and the sealed, pickled calls and outcomes that travel;
- `_channel`: a broker with its secret (one per URL per process);
- `_runner`: `WorkerTaskRunner`, `.delay()`, run ids and futures rebuilt from them;
- `_watch`: the thread that reports outcomes from the broker to the submitter's runs;
- `_worker`: `TaskWorker`, which claims, executes and acks runs;
- `_cli`: `asyncflow worker module:task ...`.

Where the rules live: a run's attempts, retries and timeout happen on the worker (a
local `ThreadPoolTaskRunner` there applies them, as on every runner); the submitter
only reports the final state the worker computed (`Run.report_remote`), so nothing
is retried twice or timed twice. Delivery (leases, redelivery, dead letters, first
result wins) is the broker's (`asyncflow._broker`).
"""

from ._runner import WorkerTaskRunner, apply_async, future_of, run_id
from ._worker import TaskWorker

__all__ = ("TaskWorker", "WorkerTaskRunner", "apply_async", "future_of", "run_id")
