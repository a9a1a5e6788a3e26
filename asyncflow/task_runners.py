"""Task runners: where task runs execute.

>>> with ThreadPoolTaskRunner(max_workers=4) as runner:    # doctest: +SKIP
...     runner.submit(double, {"x": 2}).result()
"""

from ._runners._base import TaskRunner
from ._runners._process import ProcessPoolTaskRunner
from ._runners._thread import ThreadPoolTaskRunner

__all__ = ("ProcessPoolTaskRunner", "TaskRunner", "ThreadPoolTaskRunner")
