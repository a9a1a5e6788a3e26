"""`.map()`: every mapping rule of the SPEC, and its errors."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from helpers import WAIT, boom, ident

from asyncflow import FutureList, allow_failure, exceptions, flow, quote, task, unmapped
from asyncflow.task_runners import ThreadPoolTaskRunner


@task
async def aident(x: Any) -> Any:
    await asyncio.sleep(0)
    return x


@task
def pair(x: Any, y: Any) -> tuple[Any, Any]:
    return (x, y)


@task
def with_default(x: Any, y: Any = (10, 20, 30)) -> tuple[Any, Any]:
    return (x, y)


@task
def make_list(n: int) -> list[int]:
    return list(range(n))


@pytest.fixture
def runner() -> Any:
    with ThreadPoolTaskRunner(max_workers=4) as started:
        yield started


# ---- what is mapped -------------------------------------------------------------------------


@pytest.mark.usefixtures("runner")
@pytest.mark.parametrize("use", [ident, aident], ids=["sync", "async"])
@pytest.mark.parametrize(
    ("iterable", "expected"),
    [
        ([1, 2, 3], [1, 2, 3]),
        ((1, 2), [1, 2]),
        (range(4), [0, 1, 2, 3]),
        ({"a": 1, "b": 2}, ["a", "b"]),  # a dict maps over its keys
        ([], []),
    ],
)
def test_iterables_are_mapped_in_input_order(use: Any, iterable: Any, expected: list[Any]) -> None:
    futures = use.map(iterable)
    assert isinstance(futures, FutureList)
    assert len(futures) == len(expected)
    assert futures.result() == expected


@pytest.mark.usefixtures("runner")
def test_lazy_iterables_are_mapped() -> None:
    assert ident.map(x * 2 for x in range(3)).result() == [0, 2, 4]
    assert ident.map(iter("xyz")).result() == ["x", "y", "z"]


@pytest.mark.usefixtures("runner")
def test_results_keep_input_order_whatever_finishes_first() -> None:
    gates = [threading.Event() for _ in range(4)]

    @task
    def held(i: int) -> int:
        assert gates[i].wait(WAIT)
        return i

    futures = held.map(range(4))
    for i in reversed(range(4)):  # release the last input first
        gates[i].set()
        futures[i].wait()
    assert futures.result() == [0, 1, 2, 3]


@pytest.mark.usefixtures("runner")
def test_several_iterables_are_zipped_and_keywords_work() -> None:
    assert pair.map([1, 2], ["a", "b"]).result() == [(1, "a"), (2, "b")]
    assert pair.map(x=[1, 2], y=(3, 4)).result() == [(1, 3), (2, 4)]
    assert pair.map([1, 2], y=[5, 6]).result() == [(1, 5), (2, 6)]


@pytest.mark.usefixtures("runner")
@pytest.mark.parametrize("static", ["ab", b"ab", 7, None, 2.5, object])
def test_str_bytes_and_non_iterables_are_broadcast(static: Any) -> None:
    assert pair.map([1, 2], static).result() == [(1, static), (2, static)]


@pytest.mark.usefixtures("runner")
def test_unmapped_broadcasts_an_iterable() -> None:
    static = [1, 2, 3]
    results = pair.map([1, 2], unmapped(static)).result()
    assert results == [(1, static), (2, static)]
    assert results[0][1] is static  # the same object to every run
    assert pair.map(unmapped("s"), [1, 2]).result() == [("s", 1), ("s", 2)]


@pytest.mark.usefixtures("runner")
def test_defaults_are_not_mapped() -> None:
    # the default (a 3-tuple) is neither mapped nor a length mismatch
    assert with_default.map([1, 2]).result() == [(1, (10, 20, 30)), (2, (10, 20, 30))]
    assert with_default.map([1, 2], y=[3, 4]).result() == [(1, 3), (2, 4)]


@pytest.mark.usefixtures("runner")
def test_a_future_argument_is_waited_for_and_its_result_mapped() -> None:
    upstream = make_list.submit(3)
    assert ident.map(upstream).result() == [0, 1, 2]
    assert pair.map(upstream, unmapped(upstream)).result() == [
        (0, [0, 1, 2]),
        (1, [0, 1, 2]),
        (2, [0, 1, 2]),
    ]


@task
async def make_list_async(n: int) -> list[int]:
    await asyncio.sleep(0)
    return list(range(n))


@task
def fail_list() -> list[int]:
    raise KeyError("no list")


@pytest.mark.asyncio
async def test_mapping_a_future_of_this_loop_asks_to_await_it() -> None:
    @flow
    async def pipeline() -> list[int]:
        upstream = make_list_async.submit(2)
        with pytest.raises(exceptions.WouldDeadlock, match=r"\.map\(await future\)"):
            ident.map(upstream)
        return await ident.map(await upstream)

    assert await pipeline() == [0, 1]


@pytest.mark.usefixtures("runner")
def test_mapping_a_failed_future_raises_upstream_failed() -> None:
    upstream = fail_list.submit()
    with pytest.raises(exceptions.UpstreamFailed, match="fail_list") as info:
        ident.map(upstream)
    assert isinstance(info.value.__cause__, KeyError)


@pytest.mark.usefixtures("runner")
def test_a_future_list_is_mapped_element_by_element() -> None:
    firsts = ident.map([1, 2, 3])
    seconds = ident.map(firsts)  # each run waits for its own upstream
    assert seconds.result() == [1, 2, 3]
    # futures inside a mapped list are resolved too
    upstream = ident.submit(9)
    assert ident.map([upstream, [upstream]]).result() == [9, [9]]


@pytest.mark.usefixtures("runner")
def test_quote_maps_and_hands_elements_over_untouched() -> None:
    upstream = ident.submit("resolved?")
    upstream.wait()
    element = [upstream]
    results = ident.map(quote([element, 2])).result()
    assert results[0] is element  # the very same object, future unresolved inside
    assert results[0][0] is upstream
    assert results[1] == 2
    assert pair.map([1, 2], quote(5)).result() == [(1, 5), (2, 5)]  # quote(1) is broadcast
    box = {"k": upstream}
    assert ident.map(quote(box)).result() == ["k"]  # a quoted dict maps over its keys
    assert pair.map([1], unmapped(quote(box))).result()[0][1] is box


@pytest.mark.usefixtures("runner")
def test_allow_failure_in_map() -> None:
    failed = boom.submit()
    failed.wait()
    results = ident.map([allow_failure(failed), 1]).result()
    assert results[0] is failed.exception()
    assert results[1] == 1
    mapped_allowed = ident.map(allow_failure([failed, 2])).result()
    assert mapped_allowed == [failed.exception(), 2]
    not_ready = ident.map([failed, 3])
    not_ready.wait()
    assert [f.state.name for f in not_ready] == ["NotReady", "Completed"]


@pytest.mark.usefixtures("runner")
def test_wait_for_applies_to_every_mapped_run() -> None:
    release = threading.Event()
    order: list[str] = []

    @task
    def first() -> None:
        assert release.wait(WAIT)
        order.append("first")

    @task
    def after(x: int) -> int:
        order.append(f"after-{x}")
        return x

    gate = first.submit()
    futures = after.map([1, 2, 3], wait_for=[gate])
    assert not any(f.done() for f in futures)
    release.set()
    assert futures.result() == [1, 2, 3]
    assert order[0] == "first"

    failed = boom.submit()
    skipped = after.map([4, 5], wait_for=[failed])
    skipped.wait()
    assert [f.state.name for f in skipped] == ["NotReady", "NotReady"]
    with pytest.raises(exceptions.UpstreamFailed):
        skipped.result()
    allowed = after.map([6, 7], wait_for=[allow_failure(failed)])
    assert allowed.result() == [6, 7]


def test_runner_map_takes_a_parameter_dict() -> None:
    with ThreadPoolTaskRunner(max_workers=2) as runner:
        futures = runner.map(pair, {"x": [1, 2], "y": unmapped([0])})
        assert futures.result() == [(1, [0]), (2, [0])]


def test_map_in_a_sync_flow_returns_results() -> None:
    @flow
    def pipeline(xs: list[int]) -> list[int]:
        return ident.map(xs)  # type: ignore[return-value]  # futures resolved on return

    assert pipeline([3, 1, 2]) == [3, 1, 2]


@pytest.mark.asyncio
async def test_map_in_an_async_flow() -> None:
    @flow
    async def pipeline(xs: list[int]) -> list[int]:
        firsts = aident.map(xs)
        return await ident.map(firsts)

    assert await pipeline([1, 2, 3]) == [1, 2, 3]


# ---- shape errors, at the call ---------------------------------------------------------------


def test_length_mismatch_is_raised_at_the_call_and_starts_nothing() -> None:
    calls: list[Any] = []

    @task
    def record(x: Any, y: Any) -> None:
        calls.append((x, y))

    with ThreadPoolTaskRunner(max_workers=2):
        with pytest.raises(exceptions.MappingLengthMismatch, match="record") as info:
            record.map([1, 2, 3], [1, 2])
        assert isinstance(info.value, ValueError)
        message = str(info.value)
        assert "x=3" in message
        assert "y=2" in message
        assert "unmapped" in message  # says what to do
    assert calls == []


def test_no_iterable_raises_missing_iterable() -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        with pytest.raises(exceptions.MappingMissingIterable, match="pair") as info:
            pair.map(1, "abc")
        assert isinstance(info.value, ValueError)
        with pytest.raises(exceptions.MappingMissingIterable):
            pair.map(unmapped([1, 2]), unmapped([3]))
        with pytest.raises(exceptions.MappingMissingIterable):
            with_default.map(quote(1))


def test_map_binds_arguments_like_a_call() -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        with pytest.raises(TypeError, match="pair"):
            pair.map([1], [2], [3])
        with pytest.raises(TypeError, match="pair"):
            pair.map([1], z=[2])
