"""Futures in arguments, `quote` / `unmapped` / `allow_failure`, `NotReady` downstream
of a failure, `wait_for`, and context variables, in sync and async code."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import threading
from typing import Any, NamedTuple

import pytest
from helpers import WAIT

from asyncflow import TaskFuture, allow_failure, exceptions, flow, quote, task, unmapped
from asyncflow.task_runners import ThreadPoolTaskRunner


@task
def identity(x: Any) -> Any:
    return x


@task
async def aidentity(x: Any) -> Any:
    await asyncio.sleep(0)
    return x


@task
def value(x: Any) -> Any:
    return x


@task
async def avalue(x: Any) -> Any:
    return x


@task
def boom(message: str = "boom") -> Any:
    raise ValueError(message)


@task
async def aboom(message: str = "boom") -> Any:
    raise ValueError(message)


@dataclasses.dataclass
class Box:
    a: Any
    b: Any = 0


@dataclasses.dataclass(frozen=True)
class FrozenBox:
    a: Any


class Pair(NamedTuple):
    left: Any
    right: Any


# ---- futures inside arguments ---------------------------------------------------------------


@pytest.mark.parametrize("make", [value, avalue], ids=["sync-upstream", "async-upstream"])
@pytest.mark.parametrize("use", [identity, aidentity], ids=["sync-task", "async-task"])
def test_futures_are_resolved_anywhere_in_arguments(make: Any, use: Any) -> None:
    with ThreadPoolTaskRunner(max_workers=4):
        one, two = make.submit(1), make.submit(2)
        cases: list[tuple[Any, Any]] = [
            (one, 1),
            ([one, two, 3], [1, 2, 3]),
            ((one, (two,)), (1, (2,))),
            ({one, 5}, {1, 5}),
            (frozenset({two}), frozenset({2})),
            ({"a": one, "b": [two, {"c": one}]}, {"a": 1, "b": [2, {"c": 1}]}),
            (Box(one, [two]), Box(1, [2])),
            (FrozenBox(two), FrozenBox(2)),
            (Pair(one, two), Pair(1, 2)),
        ]
        futures = [use.submit(arg) for arg, _ in cases]
        for fut, (arg, expected) in zip(futures, cases, strict=True):
            got = fut.result(timeout=WAIT)
            assert got == expected, arg
            assert type(got) is type(expected)


def test_arguments_without_futures_are_not_copied() -> None:
    items = [1, [2, 3], {"k": (4,)}]
    mapping = {"a": [1], "b": Box(2)}
    box = Box([1, 2], {"x": 3})
    with ThreadPoolTaskRunner(max_workers=2):
        assert identity.submit(items).result() is items
        assert identity.submit(mapping).result() is mapping
        assert identity.submit(box).result() is box
    assert identity(items) is items
    assert identity(box) is box


@pytest.mark.asyncio
async def test_arguments_without_futures_are_not_copied_async() -> None:
    items = [1, {"k": 2}]
    assert await aidentity(items) is items
    async with ThreadPoolTaskRunner(max_workers=2):
        assert await aidentity.submit(items) is items


def test_resolving_rebuilds_only_the_containers_holding_futures() -> None:
    untouched = [1, 2]
    with ThreadPoolTaskRunner(max_workers=2):
        fut = value.submit(3)
        outer = {"fut": fut, "plain": untouched}
        got = identity.submit(outer).result()
    assert got == {"fut": 3, "plain": [1, 2]}
    assert got is not outer
    assert got["plain"] is untouched
    assert outer["fut"] is fut  # the caller's container is not mutated


def test_direct_call_resolves_futures() -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        fut = value.submit(5)
        assert identity([fut, {"x": fut}]) == [5, {"x": 5}]


@pytest.mark.asyncio
async def test_direct_async_call_resolves_futures() -> None:
    async with ThreadPoolTaskRunner(max_workers=2):
        fut = avalue.submit(5)
        assert await aidentity((fut,)) == (5,)


# ---- quote / unmapped ----------------------------------------------------------------------


def test_quote_passes_the_very_same_object() -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        fut = value.submit(1)
        payload = [fut, 2]
        got = identity.submit(quote(payload)).result()
        assert got is payload
        assert got[0] is fut  # the future inside was not resolved
        single = identity.submit(quote(fut)).result()
        assert single is fut
        assert identity(quote(payload)) is payload


def test_unmapped_in_submit_passes_its_value() -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        fut = value.submit(4)
        assert identity.submit(unmapped([fut, 1])).result() == [4, 1]


# ---- failures upstream -------------------------------------------------------------------------


@pytest.mark.parametrize("up", [boom, aboom], ids=["sync", "async"])
@pytest.mark.parametrize("down", [identity, aidentity], ids=["sync", "async"])
def test_downstream_of_a_failure_is_not_ready(up: Any, down: Any) -> None:
    ran: list[Any] = []

    @task
    def record(x: Any) -> None:
        ran.append(x)

    with ThreadPoolTaskRunner(max_workers=2):
        failed = up.submit("upstream broke")
        child = down.submit({"nested": [failed]})
        grandchild = record.submit(child)
        for fut in (failed, child, grandchild):
            fut.wait()
        with pytest.raises(ValueError, match="upstream broke"):
            failed.result()
    assert ran == []
    for fut in (child, grandchild):
        assert fut.state.name == "NotReady"
        assert fut.state.is_pending()
        assert fut.state.is_final()
        assert fut.done()
    with pytest.raises(exceptions.UpstreamFailed, match=up.name) as info:
        child.result()
    assert isinstance(info.value.__cause__, ValueError)
    assert info.value.__cause__ is failed.exception()
    with pytest.raises(exceptions.UpstreamFailed) as info2:
        grandchild.result()
    # the root failure, not the chain of skips (docs/dependencies.md)
    assert info2.value.__cause__ is failed.exception()
    assert f"upstream task {down.name!r} ended NotReady" in str(info2.value)
    assert f"started at task {up.name!r}" in str(info2.value)


def test_allow_failure_runs_the_downstream_with_the_exception() -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        failed = boom.submit("handled")
        ok = value.submit(1)
        got = identity.submit([allow_failure(failed), allow_failure(ok)]).result()
        whole = identity.submit(allow_failure([failed, ok])).result()
    assert isinstance(got[0], ValueError)
    assert got[0] is failed.exception()
    assert got[1] == 1
    assert whole[0] is failed.exception()
    assert whole[1] == 1


@pytest.mark.asyncio
async def test_allow_failure_async() -> None:
    async with ThreadPoolTaskRunner(max_workers=2):
        failed = aboom.submit("handled")
        got = await aidentity.submit(allow_failure(failed))
        assert isinstance(got, ValueError)
        direct = await aidentity(allow_failure(failed))
        assert direct is got


def test_direct_call_with_a_failed_future_raises_upstream_failed() -> None:
    calls: list[Any] = []

    @task
    def record(x: Any) -> None:
        calls.append(x)

    with ThreadPoolTaskRunner(max_workers=2):
        failed = boom.submit("upstream")
        failed.wait()
        with pytest.raises(exceptions.UpstreamFailed, match="record") as info:
            record([failed])
        assert isinstance(info.value.__cause__, ValueError)
        assert info.value.__cause__ is failed.exception()
        assert calls == []
        record(allow_failure(failed))
    assert calls == [failed.exception()]


@pytest.mark.asyncio
async def test_direct_async_call_with_a_failed_future_raises_upstream_failed() -> None:
    async with ThreadPoolTaskRunner(max_workers=2):
        failed = aboom.submit("upstream")
        with pytest.raises(exceptions.UpstreamFailed) as info:
            await aidentity(failed)
        assert isinstance(info.value.__cause__, ValueError)


def test_flow_returning_a_not_ready_future_fails_with_upstream_failed() -> None:
    @flow
    def pipeline() -> Any:
        return identity.submit(boom.submit("deep"))

    with pytest.raises(exceptions.UpstreamFailed) as info:
        pipeline()
    assert isinstance(info.value.__cause__, ValueError)


# ---- wait_for --------------------------------------------------------------------------------


def test_wait_for_orders_runs_without_passing_data() -> None:
    release = threading.Event()
    order: list[str] = []

    @task
    def first() -> str:
        assert release.wait(WAIT)
        order.append("first")
        return "ignored"

    @task
    def second() -> str:
        order.append("second")
        return "second"

    with ThreadPoolTaskRunner(max_workers=4):
        a = first.submit()
        b = second.submit(wait_for=[a])
        c = second.submit(wait_for=a)  # a single future is accepted too
        assert not b.done()
        release.set()
        assert b.result() == "second"
        assert c.result() == "second"
    assert order[0] == "first"


def test_wait_for_a_failure_skips_unless_allowed() -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        failed = boom.submit()
        skipped = value.submit(1, wait_for=[failed])
        allowed = value.submit(2, wait_for=[allow_failure(failed)])
        assert allowed.result() == 2
        skipped.wait()
        assert failed.exception() is not None
    assert skipped.state.name == "NotReady"
    with pytest.raises(exceptions.UpstreamFailed) as info:
        skipped.result()
    assert info.value.__cause__ is failed.exception()


def test_direct_call_with_wait_for() -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        failed = boom.submit()
        ok = value.submit(1)
        assert identity(2, wait_for=[ok]) == 2
        assert ok.done()
        with pytest.raises(exceptions.UpstreamFailed):
            identity(3, wait_for=[failed])
        assert identity(4, wait_for=[allow_failure(failed)]) == 4


@pytest.mark.asyncio
async def test_async_wait_for() -> None:
    gate = asyncio.Event()
    order: list[str] = []

    @task
    async def first() -> None:
        await gate.wait()
        order.append("first")

    @task
    async def second() -> None:
        order.append("second")

    async with ThreadPoolTaskRunner(max_workers=2):
        a = first.submit()
        b = second.submit(wait_for=[a])
        await asyncio.sleep(0)
        gate.set()
        await b
        await second(wait_for=[a])
    assert order == ["first", "second", "second"]


# ---- context variables --------------------------------------------------------------------------

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


@task
def read_sync() -> str:
    seen = request_id.get()
    request_id.set("changed-in-task")  # must not leak back to the submitter
    return seen


@task
async def read_async() -> str:
    seen = request_id.get()
    request_id.set("changed-in-task")
    return seen


def test_contextvars_are_copied_into_sync_and_async_runs() -> None:
    token = request_id.set("req-42")
    try:
        with ThreadPoolTaskRunner(max_workers=2):
            assert read_sync.submit().result() == "req-42"
            assert read_async.submit().result() == "req-42"
            request_id.set("req-43")  # each submission copies the context at that time
            assert read_sync.submit().result() == "req-43"
        assert read_sync() == "req-43"
        assert request_id.get() == "req-43"
    finally:
        request_id.reset(token)


@pytest.mark.asyncio
async def test_contextvars_are_copied_in_async_code() -> None:
    token = request_id.set("async-req")
    try:
        async with ThreadPoolTaskRunner(max_workers=2):
            assert await read_sync.submit() == "async-req"
            assert await read_async.submit() == "async-req"
        assert await read_async() == "async-req"
        assert request_id.get() == "async-req"

        @flow
        async def pipeline() -> list[str]:
            return [await read_async.submit(), await read_sync.submit()]

        assert await pipeline() == ["async-req", "async-req"]
    finally:
        request_id.reset(token)


def test_futures_are_typed_task_futures() -> None:
    with ThreadPoolTaskRunner(max_workers=1):
        fut = value.submit(1)
        assert isinstance(fut, TaskFuture)
        assert fut.result() == 1


@pytest.mark.timeout(20)
def test_a_skip_is_final_before_anything_hears_of_its_upstreams_failure() -> None:
    # A NotReady cascade is decided under the engine's lock; if the skipped run became
    # final only later, an `allow_failure` dependent of it started by another thread in
    # between saw no value (None) instead of its UpstreamFailed. The upstream's own
    # done callbacks run before anything else happens after its failure: by then every
    # run of the cascade must be final.
    gate = threading.Event()
    seen: list[tuple[str, ...]] = []

    @task
    def fails() -> None:
        gate.wait(WAIT)
        raise ValueError("root")

    with ThreadPoolTaskRunner(max_workers=2):
        root = fails.submit()
        skipped = identity.submit(root)  # NotReady once `root` fails
        deeper = identity.submit(skipped)  # NotReady too (a cascade of two)
        allowed = identity.submit(allow_failure(skipped))
        root.add_done_callback(lambda _: seen.append((skipped.state.name, deeper.state.name)))
        gate.set()
        result = allowed.result(timeout=WAIT)
    assert seen == [("NotReady", "NotReady")]
    assert isinstance(result, exceptions.UpstreamFailed)
