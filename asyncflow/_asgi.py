"""ASGI middleware: a clear error for requests cut short by the server's shutdown.

Framework-free (plain ASGI dicts). Whether a handler's `TaskCancelled` is the
shutdown's doing is asked of the middleware's own `Engine` (`engine.shutdown_started`),
so two engines in one process do not answer for each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._core import TaskCancelled
from ._lifespan import Engine, latest_engine

__all__ = ("ShutdownErrorMiddleware",)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SHUTDOWN_BODY = (
    b"503 Service Unavailable: the server shut down before this request finished "
    b"(its work was cancelled after the grace period); retry it\n"
)


class ShutdownErrorMiddleware:
    """ASGI middleware: a request cancelled by the server's shutdown gets a 503.

    Servers cancel handlers still running when their graceful-shutdown timeout runs out
    (uvicorn's `timeout_graceful_shutdown`); a handler also fails with
    `exceptions.TaskCancelled` when an `Engine` cancels its work after the grace period.
    Without this wrapper clients see a bare 500 or a dropped connection; with it, if no
    response has started, they get `503` with a `Retry-After` header and a plain-text
    reason. Other errors pass through untouched. Works for any ASGI app.

    `engine` is the `Engine` whose shutdown counts (default: the engine entered last in
    this process; pass it when a process runs more than one).
    """

    def __init__(self, app: ASGIApp, *, engine: Engine | None = None) -> None:
        self.app = app
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        started = False
        engine = self.engine or latest_engine()  # the engine running as the request began

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except asyncio.CancelledError:
            if not started:
                await _send_503(send)
            raise
        except TaskCancelled:
            if started or engine is None or not engine.shutdown_started:
                raise
            await _send_503(send)


async def _send_503(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(_SHUTDOWN_BODY)).encode()),
                (b"retry-after", b"1"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _SHUTDOWN_BODY})
