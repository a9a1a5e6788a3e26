"""Using asyncflow in a web app: one shared engine per app, graceful shutdown.

Works with any ASGI framework (no framework is imported). With Starlette or FastAPI:

    from asyncflow.web import SharedTaskRunner, ShutdownErrorMiddleware, engine

    @flow(task_runner=SharedTaskRunner())        # each call: its own scope, shared pool
    async def handle(x: int) -> dict: ...

    app = Starlette(routes=..., lifespan=engine(max_workers=16, grace_seconds=10),
                    middleware=[Middleware(ShutdownErrorMiddleware)])

See docs/web.md.
"""

from ._asgi import ShutdownErrorMiddleware
from ._lifespan import Engine, engine
from ._public import publish
from ._runners._shared import SharedTaskRunner

__all__ = ("Engine", "SharedTaskRunner", "ShutdownErrorMiddleware", "engine")

publish(__name__, __all__, globals())
