"""Task workers: processes that execute tasks sent through a broker (docs/workers.md).

    # worker.py                                # the web app, or any script
    from asyncflow import serve                # fut = fetch.delay("https://...")
    from myapp.tasks import fetch              # rid = run_id(fut)
    serve(fetch, broker="sqlite:///jobs.db")   # ... later, in any process:
                                               # future(rid, broker=...).result()

or from a shell: `asyncflow worker myapp.tasks:fetch --broker sqlite:///jobs.db`.
(`asyncflow.task_worker.serve` is also where Prefect users look for it.)

The implementation is imported on first use, so importing asyncflow stays lean.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._core import TaskFuture

__all__ = ("aserve", "future", "run_id", "serve")


def serve(
    *tasks: Any,
    broker: str | None = None,
    limit: int = 10,
    lease_seconds: float = 30.0,
    grace_seconds: float = 30.0,
    name: str | None = None,
    modules: Iterable[str] = (),
    import_any: bool = False,
    keep_results_seconds: float | None = 86400.0,
) -> None:
    """Execute `tasks` (tasks, or `"module:qualname"` strings) as runs for them arrive
    in the broker at `broker` (None: `ASYNCFLOW_BROKER_URL`, else the default SQLite
    file), at most `limit` at once: async tasks on this worker's event loop, sync
    ones on its threads. Blocks until SIGTERM or SIGINT, then stops taking work,
    lets the runs it holds finish for up to `grace_seconds` (hands back the rest) and
    returns. `lease_seconds`: how long a run stays this worker's without a renewal
    (renewed every third of it while the run executes). `modules`: modules served
    whole (a task of theirs it does not find fails, named, instead of waiting);
    `import_any`: serve every task sent, importing its module on demand (only with a
    signing key you trust: docs/workers.md). `keep_results_seconds`: how long a final
    run's record and result stay in the broker (default a day; None: for good)."""
    asyncio.run(
        aserve(
            *tasks,
            broker=broker,
            limit=limit,
            lease_seconds=lease_seconds,
            grace_seconds=grace_seconds,
            name=name,
            modules=modules,
            import_any=import_any,
            keep_results_seconds=keep_results_seconds,
        )
    )


async def aserve(
    *tasks: Any,
    broker: str | None = None,
    limit: int = 10,
    lease_seconds: float = 30.0,
    grace_seconds: float = 30.0,
    name: str | None = None,
    modules: Iterable[str] = (),
    import_any: bool = False,
    keep_results_seconds: float | None = 86400.0,
) -> None:
    """`serve` on the running event loop; cancelling it stops the worker as a signal
    would (SIGTERM/SIGINT are handled when it runs in the main thread)."""
    from ._taskworkers import TaskWorker

    worker = TaskWorker(
        tasks,
        broker,
        limit=limit,
        lease_seconds=lease_seconds,
        grace_seconds=grace_seconds,
        name=name,
        modules=modules,
        import_any=import_any,
        keep_results_seconds=keep_results_seconds,
    )
    await worker.serve(handle_signals=True)


def future(run_id: str, broker: str | None = None) -> TaskFuture[Any]:
    """The future of run `run_id` in the broker at `broker`, in any process: await it
    or `.result()` it (it waits as long as the run is not final; no timeout unless you
    pass one)."""
    from ._taskworkers import future_of

    return future_of(run_id, broker)


def run_id(fut: TaskFuture[Any]) -> str:
    """The id of the run behind a future returned by `.delay()` or a
    `WorkerTaskRunner`: hand it to `future()` elsewhere."""
    from ._taskworkers import run_id as find

    return find(fut)
