"""Retry-delay helpers for `retry_delay_seconds=`, with Prefect's names and contracts.

`exponential_backoff(backoff_factor)` returns what Prefect's does: a callable that,
given a task's number of retries, lists one delay per retry, doubling from
`backoff_factor` (the urllib3 design). asyncflow's engine accepts that form beside its
own `f(attempt) -> seconds` (it tells them apart by the result, a list).

    >>> exponential_backoff(backoff_factor=10)(3)
    [10.0, 20.0, 40.0]
"""

from __future__ import annotations

from collections.abc import Callable

from ._core import check_factor

__all__ = ("exponential_backoff",)

# Prefect caps the list at 50 delays; so do we, so ported code gets the same delays.
_MOST_DELAYS = 50


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """Delays for `retry_delay_seconds=` that double with each retry.

    `backoff_factor` is the delay before the first retry, in seconds (a finite number
    >= 0); retry `n` waits `backoff_factor * 2 ** (n - 1)`. For example
    `@task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=10))`
    waits 10, 20 and 40 seconds. Combine it with `retry_jitter_factor=` to spread
    retries of many runs apart.
    """
    factor = check_factor("backoff_factor", backoff_factor)
    if factor is None:
        raise TypeError("backoff_factor must be a number of seconds, got None")

    def retry_backoff_callable(retries: int) -> list[float]:
        return [factor * 2**n for n in range(min(retries, _MOST_DELAYS))]

    return retry_backoff_callable
