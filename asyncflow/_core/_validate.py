"""One validator per kind of value a user hands asyncflow, shared by every entry point.

Each raises `TypeError` for the wrong type (a bool is not a number here, a string is
not a number of seconds) and `ValueError` for a bad value, naming the parameter and
the value. Callers add the task or flow name.

* a **timeout** (`result(timeout=)`, `timeout_seconds=`, `grace_seconds=`): a number
  >= 0, or None; infinity means no timeout and comes back as None, so no caller ever
  hands `inf` (or a wait longer than `threading.TIMEOUT_MAX`) to `threading` or asyncio.
* a **delay** (`retry_delay_seconds=`): a finite number >= 0; waiting for ever before
  a retry is a mistake, not a setting.
* a **factor** (`retry_jitter_factor=`): a finite number >= 0, or None.
* a **count** (`retries=`, `max_workers=`, `max_concurrency=`): an int >= `minimum`.

    >>> timeout("timeout", float("inf")) is None
    True
    >>> delay("retry_delay_seconds", float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: retry_delay_seconds must be a finite number of seconds >= 0, got nan
"""

from __future__ import annotations

import math
import threading
from typing import Any

__all__ = ("count", "delay", "factor", "timeout")

# Longer than the lock primitives can wait (about 292 years on Linux): no timeout.
_LONGEST_WAIT = threading.TIMEOUT_MAX


def _number(what: str, value: Any, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be {unit}, got {type(value).__name__}: {value!r}")
    return float(value)


def timeout(what: str, value: Any, *, allow_zero: bool = True) -> float | None:
    """A timeout in seconds; None (or infinity, or longer than any wait) for none.

    `allow_zero=False` for options where zero has no sensible meaning (a task's
    `timeout_seconds=0` would fail every run before it starts).
    """
    if value is None:
        return None
    seconds = _number(what, value, "a number of seconds or None")
    if math.isnan(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(
            f"{what} must be a number of seconds {bound} (or None/inf for no timeout), "
            f"got {value!r}"
        )
    return None if seconds > _LONGEST_WAIT else seconds


def delay(what: str, value: Any) -> float:
    """A delay in seconds: finite and >= 0."""
    seconds = _number(what, value, "a number of seconds")
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"{what} must be a finite number of seconds >= 0, got {value!r}")
    return seconds


def factor(what: str, value: Any) -> float | None:
    """A non-negative finite multiplier, or None."""
    if value is None:
        return None
    number = _number(what, value, "a number or None")
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")
    return number


def count(what: str, value: Any, *, minimum: int = 0) -> int:
    """An int >= `minimum` (not a bool, not a float that happens to be whole)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}: {value!r}")
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value!r}")
    return value
