"""Prefect's `exponential_backoff` for `retry_delay_seconds=`, and the `opaque`
annotation (issue 15): a future at the top is awaited, nothing inside is looked at."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from asyncflow import exceptions, flow, task
from asyncflow._core import _engine
from asyncflow.tasks import exponential_backoff
from asyncflow.utilities.annotations import allow_failure, opaque, quote

WAIT = 10  # seconds a gate may take before a test fails instead of hanging


# ---- exponential_backoff ---------------------------------------------------------------------


def test_exponential_backoff_lists_doubling_delays_as_prefect() -> None:
    backoff = exponential_backoff(backoff_factor=10)
    assert backoff(0) == []
    assert backoff(4) == [10, 20, 40, 80]
    assert len(backoff(200)) == 50  # Prefect's cap
    assert exponential_backoff(0.5)(3) == [0.5, 1.0, 2.0]


@pytest.mark.parametrize(
    ("factor", "error"),
    [
        (-1, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ("1", TypeError),
        (None, TypeError),
    ],
)
def test_exponential_backoff_rejects_bad_factors_naming_them(factor: Any, error: type) -> None:
    with pytest.raises(error, match="backoff_factor"):
        exponential_backoff(factor)


def test_exponential_backoff_sets_the_delay_of_each_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    waited: list[float] = []
    # Record the delays instead of waiting them out.
    monkeypatch.setattr(_engine, "_wait_retry_delay", lambda run, delay: waited.append(delay))
    attempts = 0

    @task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=10))
    def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 4:
            raise ConnectionError(f"attempt {attempts}")
        return "ok"

    assert flaky() == "ok"
    assert waited == [10.0, 20.0, 40.0]


def test_exponential_backoff_zero_factor_retries_without_errors_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts = 0

    @task(retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=0))
    def flaky() -> int:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError("again")
        return attempts

    with caplog.at_level(logging.ERROR, logger="asyncflow"):
        assert flaky.submit().result(timeout=WAIT) == 3
    # A list from the callable was taken for a broken delay function before.
    assert not [r for r in caplog.records if "retry_delay_seconds" in r.getMessage()]


def test_asyncflow_style_delay_callables_still_get_the_attempt() -> None:
    policy = task(retries=3, retry_delay_seconds=lambda attempt: attempt * 1.5)(
        lambda: None
    ).run_options.retry
    assert policy is not None
    assert [policy.delay_for(a) for a in (1, 2, 3)] == [1.5, 3.0, 4.5]


# ---- opaque -------------------------------------------------------------------------------------


@task
def ident(x: Any) -> Any:
    return x


@task
async def aident(x: Any) -> Any:
    return x


@task
def boom() -> int:
    raise KeyError("upstream broke")


def test_opaque_future_is_awaited_and_its_result_passed() -> None:
    gate = threading.Event()

    @task
    def slow() -> dict[str, Any]:
        assert gate.wait(WAIT)
        return {"rows": [1, 2, 3]}

    @flow
    def pipeline() -> Any:
        upstream = slow.submit()
        downstream = ident.submit(opaque(upstream))
        assert not downstream.done()  # it waits for the upstream
        gate.set()
        return downstream.result(timeout=WAIT)

    assert pipeline() == {"rows": [1, 2, 3]}


def test_opaque_does_not_look_inside_a_value() -> None:
    @flow
    def pipeline() -> None:
        inner = ident.submit(1)
        box = [inner, 2]
        got = ident.submit(opaque(box)).result(timeout=WAIT)
        assert got is box  # the very same list, the future in it untouched
        assert got[0] is inner
        # Without opaque the future inside is resolved (the contrast that makes this fail).
        assert ident.submit(box).result(timeout=WAIT) == [1, 2]

    pipeline()


def test_opaque_direct_call_passes_the_same_object() -> None:
    big = {"k": list(range(10))}
    assert ident(opaque(big)) is big


def test_opaque_failed_upstream_stops_the_downstream_unless_allowed() -> None:
    @flow
    def pipeline() -> None:
        bad = boom.submit()
        stopped = ident.submit(opaque(bad))
        with pytest.raises(exceptions.UpstreamFailed) as info:
            stopped.result(timeout=WAIT)
        assert isinstance(info.value.__cause__, KeyError)
        allowed = ident.submit(allow_failure(opaque(bad))).result(timeout=WAIT)
        assert isinstance(allowed, KeyError)

    pipeline()


def test_opaque_is_broadcast_by_map() -> None:
    @task
    def pair(x: int, y: Any) -> tuple[int, Any]:
        return (x, y)

    @flow
    def pipeline() -> list[tuple[int, Any]]:
        listed = ident.submit([7, 8])
        return pair.map([1, 2], opaque(listed)).result()

    assert pipeline() == [(1, [7, 8]), (2, [7, 8])]


@pytest.mark.asyncio
async def test_opaque_in_async_code() -> None:
    @flow
    async def pipeline() -> Any:
        upstream = aident.submit({"a": 1})
        inside = [upstream]
        first = await aident.submit(opaque(upstream))
        second = await aident.submit(opaque(inside))
        assert second is inside
        return first

    assert await pipeline() == {"a": 1}


def test_quote_and_opaque_differ_on_a_top_level_future() -> None:
    @flow
    def pipeline() -> None:
        upstream = ident.submit(5)
        assert ident.submit(quote(upstream)).result(timeout=WAIT) is upstream
        assert ident.submit(opaque(upstream)).result(timeout=WAIT) == 5

    pipeline()
