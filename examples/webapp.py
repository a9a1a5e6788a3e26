"""asyncflow in a web app: a Starlette endpoint that awaits a flow mixing async I/O,
a blocking call on a thread and CPU-bound work, and returns the results as JSON.

Run it with:   python examples/webapp.py            (serves http://127.0.0.1:8000)
Then:          curl http://127.0.0.1:8000/report/7

One `asyncflow.web.engine` lives for the app's lifetime (its lifespan): a shared thread
pool for sync tasks and a shared "cpu" runner for CPU-bound ones, so requests share
pools instead of starting their own. Each request's flow is still a structured scope
of its own. On shutdown (Ctrl-C / SIGTERM) requests in flight get uvicorn's graceful
period, runs still going get the engine's `grace_seconds`, then they are cancelled
and the client gets a 503 (`ShutdownErrorMiddleware`).

`/raw/{user_id}` is the same handler written with plain asyncio and
`loop.run_in_executor`, for the comparison in `examples/webapp_load.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import hashlib
import os
import sys
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asyncflow import flow, task
from asyncflow.task_runners import ProcessPoolTaskRunner
from asyncflow.web import SharedTaskRunner, ShutdownErrorMiddleware, engine

ROUNDS = 2_000  # sha256 rounds of the CPU-bound task: about a millisecond
IO_WORKERS = 16
CPU_WORKERS = 2


# ---- the tasks -------------------------------------------------------------------------


@task
async def fetch_profile(user_id: int) -> dict[str, Any]:
    """Async I/O (a database or HTTP call): runs on the server's event loop."""
    await asyncio.sleep(0.01)
    return {"id": user_id, "name": f"user-{user_id}"}


@task
def load_history(user_id: int) -> dict[str, Any]:
    """A blocking call (a sync client library): runs on the shared thread pool."""
    time.sleep(0.005)
    return {"orders": [user_id * k for k in range(1, 4)], "ran_on": where()}


@task
def score(user_id: int, rounds: int) -> dict[str, Any]:
    """CPU-bound: runs on the shared "cpu" runner (processes when available)."""
    return compute_score(user_id, rounds)


def compute_score(user_id: int, rounds: int) -> dict[str, Any]:
    # A plain function too, so the raw baseline can send it to a ProcessPoolExecutor.
    return {"digest": digest(user_id, rounds), "ran_on": where()}


def digest(user_id: int, rounds: int) -> str:
    data = str(user_id).encode()
    for _ in range(rounds):
        data = hashlib.sha256(data).digest()
    return data.hex()[:16]


def where() -> str:
    return f"pid {os.getpid()} thread {threading.current_thread().name}"


# ---- the CPU runner: one process pool shared by every request ---------------------------

CPU_RUNNER = ProcessPoolTaskRunner(max_workers=CPU_WORKERS)
CPU_KIND = "processes"


# ---- the flows -------------------------------------------------------------------------


@flow(task_runner=SharedTaskRunner("cpu"))
async def crunch(user_id: int, rounds: int) -> dict[str, Any]:
    """A nested flow whose tasks run on the engine's shared "cpu" runner."""
    return await score.submit(user_id, rounds)


@flow(task_runner=SharedTaskRunner())
async def user_report(user_id: int) -> dict[str, Any]:
    profile = fetch_profile.submit(user_id)  # on the loop, concurrently
    history = load_history.submit(user_id)  # on a worker thread, concurrently
    scored = await crunch(user_id, ROUNDS)  # nested flow: CPU runner
    return {
        "user": await profile,
        "history": await history,
        "score": scored,
        "cpu_runner": CPU_KIND,
    }


# ---- the app ---------------------------------------------------------------------------


async def report(request: Request) -> JSONResponse:
    return JSONResponse(await user_report(int(request.path_params["user_id"])))


async def report_raw(request: Request) -> JSONResponse:
    """The same handler with plain asyncio: `loop.run_in_executor` and hand-made pools."""
    user_id = int(request.path_params["user_id"])
    io_pool, cpu_pool = request.app.state.raw_pools
    loop = asyncio.get_running_loop()
    profile = asyncio.ensure_future(fetch_profile.fn(user_id))
    history = loop.run_in_executor(io_pool, load_history.fn, user_id)
    scored = await loop.run_in_executor(cpu_pool, compute_score, user_id, ROUNDS)
    result = {"user": await profile, "history": await history, "score": scored}
    return JSONResponse({**result, "cpu_runner": CPU_KIND})


# One engine for the app's lifetime; the raw baseline's pools live alongside it.
ENGINE = engine(max_workers=IO_WORKERS, grace_seconds=5.0, runners={"cpu": CPU_RUNNER})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    raw_cpu = concurrent.futures.ProcessPoolExecutor(CPU_WORKERS)
    raw_io = concurrent.futures.ThreadPoolExecutor(IO_WORKERS, "raw-io")
    app.state.raw_pools = (raw_io, raw_cpu)
    try:
        async with ENGINE:
            yield
    finally:
        raw_io.shutdown(wait=True)
        raw_cpu.shutdown(wait=True)


app = Starlette(
    routes=[Route("/report/{user_id:int}", report), Route("/raw/{user_id:int}", report_raw)],
    lifespan=lifespan,
    middleware=[Middleware(ShutdownErrorMiddleware)],
)


class _Server(uvicorn.Server):
    """uvicorn's server, announcing the address once it listens (port 0 picks one)."""

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.servers and self.servers[0].sockets:
            port = self.servers[0].sockets[0].getsockname()[1]
            print(f"webapp: serving on http://127.0.0.1:{port}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--quiet", action="store_true", help="no access log")
    args = parser.parse_args()
    print("webapp: CPU-bound tasks run in worker processes (ProcessPoolTaskRunner)")
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning" if args.quiet else "info",
        access_log=not args.quiet,
        timeout_graceful_shutdown=5,
    )
    try:
        _Server(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled, once it is done
        pass
    sys.stdout.flush()


if __name__ == "__main__":
    main()
