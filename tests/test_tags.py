"""`with tags(...)` (issue 15): nesting adds and restores, each thread and asyncio
task sees its own, and task runs see the tags around their submission."""

from __future__ import annotations

import asyncio
import threading

import pytest

import asyncflow
from asyncflow import flow, tags, task
from asyncflow._tags import current_tags
from asyncflow.context import tags as context_tags

WAIT = 10.0


def test_nested_blocks_add_tags_and_leaving_restores_them() -> None:
    assert current_tags() == frozenset()
    with tags("etl", "nightly") as outer:
        assert outer == {"etl", "nightly"}
        with tags("db", "etl") as inner:
            assert inner == {"etl", "nightly", "db"}
            assert current_tags() == inner
        assert current_tags() == outer
    assert current_tags() == frozenset()


def test_tags_are_restored_when_the_block_raises() -> None:
    with pytest.raises(KeyError), tags("doomed"):
        raise KeyError("x")
    assert current_tags() == frozenset()


def test_the_yielded_set_is_a_copy() -> None:
    with tags("a") as current:
        current.add("not-a-tag")
        assert current_tags() == {"a"}


def test_a_tag_must_be_a_string() -> None:
    not_a_tag: object = 3  # not a str: mypy flags the call below, which is the point
    with pytest.raises(TypeError, match="tags must be strings"), tags("a", not_a_tag):  # type: ignore[arg-type]
        pass
    assert current_tags() == frozenset()


def test_prefect_paths_are_the_same_function() -> None:
    assert asyncflow.tags is context_tags is tags


@pytest.mark.timeout(20)
def test_another_thread_does_not_see_this_threads_tags() -> None:
    seen: list[frozenset[str]] = []
    with tags("main"):
        thread = threading.Thread(target=lambda: seen.append(current_tags()))
        thread.start()
        thread.join(WAIT)
    assert seen == [frozenset()]


@pytest.mark.asyncio
async def test_each_asyncio_task_has_its_own_tags() -> None:
    first_in = asyncio.Event()
    second_done = asyncio.Event()

    async def first() -> frozenset[str]:
        with tags("first"):
            first_in.set()
            await second_done.wait()  # the other task sets its tags meanwhile
            return current_tags()

    async def second() -> frozenset[str]:
        await first_in.wait()
        with tags("second"):
            second_done.set()
            return current_tags()

    got = await asyncio.gather(first(), second())
    assert got == [frozenset({"first"}), frozenset({"second"})]


def test_task_runs_see_the_tags_around_their_submission() -> None:
    @task
    def seen() -> frozenset[str]:
        return current_tags()

    @flow
    def pipeline() -> tuple[frozenset[str], frozenset[str]]:
        with tags("inside"):
            tagged = seen.submit()
        untagged = seen.submit()
        return tagged.result(timeout=WAIT), untagged.result(timeout=WAIT)

    assert pipeline() == (frozenset({"inside"}), frozenset())


@pytest.mark.asyncio
async def test_async_task_runs_see_the_tags_too() -> None:
    @task
    async def seen() -> frozenset[str]:
        return current_tags()

    with tags("async"):
        assert await seen() == {"async"}
        assert await seen.submit() == {"async"}
