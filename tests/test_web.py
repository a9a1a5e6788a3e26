"""asyncflow.web against a real server: uvicorn in a subprocess, driven with httpx.

Run as a script, this module is also the test server (`python tests/test_web.py
--port 0`): a Starlette app with an `asyncflow.web.engine` lifespan.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import re
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from asyncflow import check_cancelled, flow, task
from asyncflow.task_runners import ProcessPoolTaskRunner, TaskRunner
from asyncflow.web import SharedTaskRunner, ShutdownErrorMiddleware, engine

HERE = Path(__file__).resolve()
EXAMPLE = HERE.parent.parent / "examples" / "webapp.py"

# ---- the test server (used when this file runs as a script) ----------------------------


def announce(tag: str) -> None:
    # One write(2) per line: print() from several threads can interleave its pieces.
    os.write(1, f"STARTED {tag}\n".encode())


@task
def blocking(ms: int) -> str:
    """A sync task that blocks its thread, as a sync driver call would."""
    time.sleep(ms / 1000)
    return threading.current_thread().name


@task
def hold(tag: str) -> str:
    """Announce itself, then finish quickly ("short") or run until cancelled."""
    announce(tag)
    if tag.startswith("short"):
        time.sleep(0.3)  # the work a request does; shorter than both grace periods
        return tag
    while True:
        check_cancelled()  # raises once the engine cancels this run at shutdown
        time.sleep(0.01)


@task
async def ahold(tag: str) -> str:
    announce(tag)
    await asyncio.sleep(3600)
    return tag


@task
def proc_hold(tag: str) -> str:
    """Runs in a worker process (when available) and never finishes by itself."""
    announce(tag)
    while True:
        check_cancelled()  # on the thread fallback; a process worker is killed instead
        time.sleep(0.01)


@flow(task_runner=SharedTaskRunner())
async def sync_work(n: int, ms: int) -> list[str]:
    return await blocking.map([ms] * n)


@flow(task_runner=SharedTaskRunner())
async def held(tag: str) -> str:
    if tag.startswith("async"):
        return await ahold.submit(tag)
    if tag.startswith("proc"):
        return await proc_flow(tag)
    return await hold.submit(tag)


@flow(task_runner=SharedTaskRunner("cpu"))
async def proc_flow(tag: str) -> str:
    return await proc_hold.submit(tag)


def _cpu_runner() -> TaskRunner:
    return ProcessPoolTaskRunner(max_workers=1)


def make_app(grace: float) -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    lags: list[float] = []  # how late each 5 ms tick of the loop was, in seconds

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            lags.append(loop.time() - before - 0.005)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        tick = asyncio.ensure_future(ticker())
        try:
            async with engine(max_workers=16, grace_seconds=grace, runners={"cpu": _cpu_runner()}):
                yield
        finally:
            tick.cancel()

    async def work(request: Request) -> JSONResponse:
        n, ms = int(request.query_params["n"]), int(request.query_params["ms"])
        return JSONResponse({"threads": await sync_work(n, ms)})

    async def lag_endpoint(request: Request) -> JSONResponse:
        ordered = sorted(lags) or [0.0]
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        body = {"ticks": len(lags), "max_lag_ms": ordered[-1] * 1000, "p99_lag_ms": p99 * 1000}
        if "reset" in request.query_params:
            lags.clear()
        return JSONResponse(body)

    async def hold_endpoint(request: Request) -> JSONResponse:
        return JSONResponse({"tag": await held(request.path_params["tag"])})

    async def submit_endpoint(request: Request) -> JSONResponse:
        # `.submit()` outside any flow: the engine's shared runner.
        return JSONResponse({"thread": await blocking.submit(1)})

    return Starlette(
        routes=[
            Route("/work", work),
            Route("/lag", lag_endpoint),
            Route("/hold/{tag}", hold_endpoint),
            Route("/submit", submit_endpoint),
        ],
        lifespan=lifespan,
        middleware=[Middleware(ShutdownErrorMiddleware)],
    )


def serve() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--grace", type=float, default=1.0)
    parser.add_argument("--uvicorn-grace", type=int, default=1)
    args = parser.parse_args()

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            port = self.servers[0].sockets[0].getsockname()[1]
            print(f"serving on http://127.0.0.1:{port}", flush=True)

    config = uvicorn.Config(
        make_app(args.grace),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=args.uvicorn_grace,
    )
    try:
        Server(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it handled once it is done
        pass
    print(f"EXITED threads={sorted(t.name for t in threading.enumerate())}", flush=True)


if __name__ == "__main__":
    serve()
    sys.exit(0)

# ---- the tests -------------------------------------------------------------------------

import httpx  # noqa: E402  (the server part above must not need the test dependencies)
import pytest  # noqa: E402


def children_of(pid: int) -> set[int]:
    pids: set[int] = set()
    with contextlib.suppress(FileNotFoundError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(FileNotFoundError),
                open(f"/proc/{pid}/task/{tid}/children") as fh,
            ):
                pids.update(int(p) for p in fh.read().split())
    return pids


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def example_digest(user_id: int, rounds: int) -> str:
    """What examples/webapp.py computes as its CPU-bound task."""
    data = str(user_id).encode()
    for _ in range(rounds):
        data = hashlib.sha256(data).digest()
    return data.hex()[:16]


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return "?"


async def still_alive(pids: set[int], grace: float = 5.0) -> dict[int, str]:
    """The processes among `pids` still alive after `grace` seconds (orphans of an exited
    server are reaped by init, which takes a moment)."""
    deadline = time.monotonic() + grace
    while True:
        left = {pid for pid in pids if alive(pid)}
        if not left or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.02)  # polling the kernel for exits, bounded by `grace`
    return {pid: cmdline(pid) for pid in left}


class Server:
    def __init__(self, proc: asyncio.subprocess.Process, url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log
        self.lines: list[str] = []

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-60:])

    async def readline(self) -> str:
        assert self.proc.stdout is not None
        line = (await self.proc.stdout.readline()).decode()
        if not line:
            raise AssertionError(f"server output ended; its log:\n{self.log_tail()}")
        self.lines.append(line)
        return line.strip()

    async def wait_started(self, count: int, timeout: float = 20) -> list[str]:
        tags: list[str] = []

        async def collect() -> None:
            while len(tags) < count:
                line = await self.readline()
                if line.startswith("STARTED "):
                    tags.append(line.split()[1])

        try:
            await asyncio.wait_for(collect(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"only {tags} started; server output {self.lines}; its log:\n{self.log_tail()}"
            ) from None
        return tags


@contextlib.asynccontextmanager
async def run_server(script: Path, tmp_path: Path, *args: str) -> AsyncIterator[Server]:
    log = tmp_path / "server.log"
    err = log.open("wb")
    with err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(script), "--port", "0", *args,
            stdout=asyncio.subprocess.PIPE, stderr=err,
        )  # fmt: skip
    try:
        server = Server(proc, "", log)
        while not (match := re.search(r"serving on (\S+)", await server.readline())):
            pass
        server.url = match.group(1)
        yield server
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        if proc.stdout is not None:  # read to EOF so the pipe transport closes (3.10 warns)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.stdout.read(), 10)


def client(server: Server) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
    return httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30.0)


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_example_200_concurrent_requests(tmp_path: Path) -> None:
    async with run_server(EXAMPLE, tmp_path, "--quiet") as server, client(server) as http:
        ids = list(range(200))
        responses = await asyncio.gather(*(http.get(f"/report/{i}") for i in ids))
        for i, resp in zip(ids, responses, strict=True):
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["user"] == {"id": i, "name": f"user-{i}"}
            assert body["history"]["orders"] == [i, 2 * i, 3 * i]
            assert body["score"]["digest"] == example_digest(i, 2_000)
            assert "asyncflow-web" in body["history"]["ran_on"]
        kinds = {r.json()["cpu_runner"] for r in responses}
        assert len(kinds) == 1


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_loop_lag_stays_low_while_sync_tasks_run(tmp_path: Path) -> None:
    async with run_server(HERE, tmp_path) as server, client(server) as http:
        await http.get("/lag", params={"reset": "1"})
        # 100 requests x 4 sync tasks of 20 ms on a 16-thread shared pool: ~0.5 s of
        # threads kept busy while the loop serves everything else.
        responses = await asyncio.gather(
            *(http.get("/work", params={"n": 4, "ms": 20}) for _ in range(100))
        )
        threads = set()
        for resp in responses:
            assert resp.status_code == 200, resp.text
            threads.update(resp.json()["threads"])
        assert threads
        assert all(name.startswith("asyncflow-web-") for name in threads)
        assert len(threads) <= 16  # one shared pool, not one per request
        lag = (await http.get("/lag")).json()
        # p99 of the ticks, not the max: one OS scheduling hiccup on a loaded machine must
        # not fail the test, while sync work on the loop (20 ms a task) would lag most ticks.
        assert lag["ticks"] >= 20, lag
        assert lag["p99_lag_ms"] < 50, f"event loop lagged while sync tasks ran: {lag}"
        resp = await http.get("/submit")
        assert resp.json()["thread"].startswith("asyncflow-web-")


@pytest.mark.asyncio
@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_shutdown_signal_with_requests_in_flight(tmp_path: Path, sig: int) -> None:
    grace = ("--grace", "1.0", "--uvicorn-grace", "1")
    async with run_server(HERE, tmp_path, *grace) as server, client(server) as http:
        tags = ["short-1", "short-2", "short-3", "stuck-1", "stuck-2", "async-1", "proc-1"]
        requests = [asyncio.ensure_future(http.get(f"/hold/{tag}")) for tag in tags]
        started = await server.wait_started(len(tags))
        assert sorted(started) == sorted(tags)
        workers = children_of(server.proc.pid)  # the process runner's workers, if any
        t0 = time.monotonic()
        server.proc.send_signal(sig)
        try:
            answers = await asyncio.wait_for(asyncio.gather(*requests), 20)
            code = await asyncio.wait_for(server.proc.wait(), 20)
        except asyncio.TimeoutError:
            server.proc.kill()
            raise AssertionError(
                f"server hung on shutdown; its log:\n{server.log_tail()}"
            ) from None
        responses = dict(zip(tags, answers, strict=True))
        elapsed = time.monotonic() - t0
        for tag, resp in responses.items():
            if tag.startswith("short"):
                assert resp.status_code == 200, (tag, resp.text)
                assert resp.json() == {"tag": tag}
            else:
                assert resp.status_code == 503, (tag, resp.status_code, resp.text)
                assert "shut down" in resp.text
                assert resp.headers["retry-after"] == "1"
        assert code in (0, -sig), server.log_tail()
        # uvicorn's 1 s for requests + the engine's 1 s grace + cleanup; generous bound.
        assert elapsed < 15
        rest = (await server.proc.stdout.read()).decode() if server.proc.stdout else ""
        exited = [line for line in rest.splitlines() if line.startswith("EXITED")]
        if sig == signal.SIGINT:  # after SIGTERM uvicorn re-raises it: no chance to print
            assert exited, rest
            assert "asyncflow-web" not in exited[0], exited[0]
        leftover = await still_alive(workers)
        assert not leftover, f"server left worker processes behind: {leftover}"


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_server_exits_cleanly_when_idle(tmp_path: Path) -> None:
    async with run_server(HERE, tmp_path) as server, client(server) as http:
        assert (await http.get("/submit")).status_code == 200
        server.proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(server.proc.wait(), 20) == 0
        rest = (await server.proc.stdout.read()).decode() if server.proc.stdout else ""
        assert "EXITED" in rest, rest
        assert "asyncflow-web" not in rest, rest
