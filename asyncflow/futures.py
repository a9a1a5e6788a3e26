"""Futures: `TaskFuture`, `FutureList`, and `wait` / `as_completed` for both worlds.

>>> fut = double.submit(2)           # doctest: +SKIP
>>> fut.result()                     # sync
>>> await fut                        # async
>>> done, not_done = wait([fut])     # sync;  `await wait([fut])` in async code
"""

from ._core import DoneAndNotDone, FutureList, TaskFuture, as_completed, wait
from ._public import publish

__all__ = ("DoneAndNotDone", "FutureList", "TaskFuture", "as_completed", "wait")

publish(__name__, __all__, globals())
