"""Futures: `TaskFuture`, `FutureList`, and `wait` / `as_completed` for both worlds.

Examples:
    >>> import asyncio
    >>> from asyncflow import task
    >>> @task
    ... def double(x: int) -> int:
    ...     return 2 * x
    >>> fut = double.submit(2)
    >>> fut.result()                     # sync code blocks
    4
    >>> done, not_done = wait([fut])     # `await wait([fut])` in async code
    >>> fut in done, not_done
    (True, set())
    >>> async def main() -> int:
    ...     return await double.submit(21)   # async code awaits
    >>> asyncio.run(main())
    42
"""

from ._core import DoneAndNotDone, FutureList, TaskFuture, as_completed, wait
from ._public import publish

__all__ = ("DoneAndNotDone", "FutureList", "TaskFuture", "as_completed", "wait")

publish(__name__, __all__, globals())
