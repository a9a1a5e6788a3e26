"""The seams of issue 12: named worker threads, and a middleware that asks its own engine."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from asyncflow import task
from asyncflow.exceptions import TaskCancelled
from asyncflow.task_runners import ThreadPoolTaskRunner
from asyncflow.web import ShutdownErrorMiddleware, engine


@task
def thread_name() -> str:
    return threading.current_thread().name


@pytest.mark.timeout(20)
def test_thread_name_prefix_names_workers_and_survives_duplicate() -> None:
    template = ThreadPoolTaskRunner(1, thread_name_prefix="mine")
    assert template.duplicate().thread_name_prefix == "mine"
    with template.duplicate() as runner:
        assert runner.submit(thread_name, {}).result(timeout=10) == "mine-1"
    with ThreadPoolTaskRunner(1) as runner:
        assert runner.submit(thread_name, {}).result(timeout=10) == "asyncflow-worker-1"


async def _status(middleware: ShutdownErrorMiddleware) -> Any:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    try:
        await middleware({"type": "http"}, None, send)  # type: ignore[arg-type]  # unused
    except TaskCancelled:
        return "raised"
    return sent[0]["status"]


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_middleware_asks_its_own_engine_whether_shutdown_began() -> None:
    async def cut_off(scope: Any, receive: Any, send: Any) -> None:
        raise TaskCancelled("cancelled: the app shut down")

    first, second = engine(max_workers=1), engine(max_workers=1)
    async with first:
        async with second:
            assert await _status(ShutdownErrorMiddleware(cut_off, engine=second)) == "raised"
        assert second.shutdown_started
        assert not first.shutdown_started
        assert await _status(ShutdownErrorMiddleware(cut_off, engine=second)) == 503
        assert await _status(ShutdownErrorMiddleware(cut_off, engine=first)) == "raised"
    assert await _status(ShutdownErrorMiddleware(cut_off)) == 503  # the engine entered last
