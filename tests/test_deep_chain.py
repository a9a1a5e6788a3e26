"""A NotReady skip's `UpstreamFailed` has the root failure as `__cause__`, not the
chain of skips before it, so the tail of a deep chain stays cheap to keep and format
(issue 11, defect 10a; docs/dependencies.md)."""

from __future__ import annotations

import traceback
from typing import Any

import pytest

from asyncflow import allow_failure, exceptions, task
from asyncflow.task_runners import ThreadPoolTaskRunner

WAIT = 30


class RootError(Exception):
    pass


@task
def head() -> int:
    raise RootError("the head failed")


@task
def step(x: int) -> int:
    return x + 1


@task
def inspect_input(x: Any) -> Any:
    return x


def _cause_depth(exc: BaseException | None) -> int:
    depth = 0
    while exc is not None:
        depth += 1
        exc = exc.__cause__
    return depth


def _chain(length: int) -> list[Any]:
    futures = [head.submit()]
    for _ in range(length):
        futures.append(step.submit(futures[-1]))
    futures[-1].wait(WAIT)
    return futures


def test_a_direct_skip_has_the_upstreams_own_error_as_cause() -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        root, first = _chain(1)
        err = first.exception()
    assert isinstance(err, exceptions.UpstreamFailed)
    assert err.__cause__ is root.exception()
    assert "upstream task 'head' ended Failed" in str(err)
    assert "started at" not in str(err)  # the direct upstream is the root


def test_a_skip_of_a_skip_names_the_direct_upstream_and_the_root() -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        futures = _chain(3)
        errors = [fut.exception() for fut in futures]
    root_error = errors[0]
    assert isinstance(root_error, RootError)
    for err in errors[1:]:
        assert isinstance(err, exceptions.UpstreamFailed)
        assert err.__cause__ is root_error
        assert _cause_depth(err) == 2
    assert "upstream task 'step' ended NotReady" in str(errors[3])
    assert "started at task 'head'" in str(errors[3])
    assert futures[3].state.name == "NotReady"
    assert "started at task 'head'" in futures[3].state.message


def test_direct_calls_and_allow_failure_follow_the_same_rule() -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        root, _first, second = _chain(2)
        with pytest.raises(exceptions.UpstreamFailed) as info:
            step(second)  # a direct call on a NotReady future
        handed = inspect_input.submit(allow_failure(second)).result(timeout=WAIT)
    assert info.value.__cause__ is root.exception()
    assert "started at task 'head'" in str(info.value)
    assert handed is second.exception()  # allow_failure hands over the skip's own error
    assert handed.__cause__ is root.exception()


def test_an_upstream_failed_raised_by_a_task_body_is_not_unwrapped_to_nothing() -> None:
    # A task that re-raises an UpstreamFailed of its own making (no cause): the skip
    # below it keeps that exception as its cause rather than losing it.
    @task
    def gives_up() -> None:
        raise exceptions.UpstreamFailed("made by hand")

    with ThreadPoolTaskRunner(max_workers=2):
        failed = gives_up.submit()
        below = step.submit(failed)
        below.wait(WAIT)
    err = below.exception()
    assert isinstance(err, exceptions.UpstreamFailed)
    assert err.__cause__ is failed.exception()


@pytest.mark.fault
@pytest.mark.timeout(120)
def test_the_tail_of_a_100k_chain_has_a_short_cause_chain() -> None:
    with ThreadPoolTaskRunner(max_workers=4):
        futures = _chain(100_000)
        tail = futures[-1].exception()
    assert isinstance(tail, exceptions.UpstreamFailed)
    assert tail.__cause__ is futures[0].exception()
    assert _cause_depth(tail) == 2
    text = "".join(traceback.format_exception(tail))
    # two exceptions' worth of text, not 100,001 (it was 18 MB): a size, not a speed
    assert text.count("UpstreamFailed") == 1
    assert text.count("RootError: the head failed") == 1
    assert len(text) < 10_000
