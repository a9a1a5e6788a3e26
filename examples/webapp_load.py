"""Load test for examples/webapp.py: asyncflow's endpoint against the same handler
written with raw asyncio + `loop.run_in_executor`, in one run, on one server.

Starts the example app with uvicorn in a subprocess, then for each endpoint runs
`--clients` concurrent keep-alive HTTP/1.1 clients (a small asyncio load generator:
`wrk` is not needed) for `--seconds`, and prints requests/second and latency
percentiles. The two endpoints alternate over `--rounds` rounds to even out drift.

    python examples/webapp_load.py [--clients 200] [--seconds 5] [--rounds 2]

Client and server share the machine: compare the two columns, not absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import statistics
import sys
import time
from pathlib import Path

EXAMPLE = Path(__file__).with_name("webapp.py")


async def client(
    host: str, port: int, path: str, stop: float, latencies: list[float], errors: list[str]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = 0
    try:
        while time.perf_counter() < stop:
            i += 1
            request = f"GET {path}{i % 1000} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n", 1)[0].decode())
    finally:
        writer.close()
        await writer.wait_closed()


async def measure(
    host: str, port: int, path: str, clients: int, seconds: float
) -> dict[str, float]:
    latencies: list[float] = []
    errors: list[str] = []
    start = time.perf_counter()
    stop = start + seconds
    await asyncio.gather(
        *(client(host, port, path, stop, latencies, errors) for _ in range(clients))
    )
    elapsed = time.perf_counter() - start
    if errors:
        raise SystemExit(f"{path}: {len(errors)} failed requests, e.g. {errors[0]}")
    q = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    server = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), "--port", "0", "--quiet", stdout=asyncio.subprocess.PIPE
    )
    assert server.stdout is not None
    port = 0
    while not port:
        line = (await server.stdout.readline()).decode()
        if not line:
            raise SystemExit("the example server did not start")
        print(line.rstrip())
        if match := re.search(r"serving on http://127\.0\.0\.1:(\d+)", line):
            port = int(match.group(1))
    endpoints = {"asyncflow": "/report/", "raw asyncio": "/raw/"}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in endpoints}
    try:
        for path in endpoints.values():  # warm up: pools, worker processes, imports
            await measure("127.0.0.1", port, path, 20, 0.5)
        for _ in range(args.rounds):
            for name, path in endpoints.items():
                results[name].append(
                    await measure("127.0.0.1", port, path, args.clients, args.seconds)
                )
    finally:
        server.send_signal(signal.SIGINT)
        await server.wait()

    print(f"\n{args.clients} concurrent clients, {args.rounds} x {args.seconds:g} s per endpoint")
    print(f"{'handler':<14}{'requests':>10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, runs in results.items():
        total = sum(r["requests"] for r in runs)
        rps = statistics.mean(r["rps"] for r in runs)
        p50 = statistics.mean(r["p50_ms"] for r in runs)
        p99 = statistics.mean(r["p99_ms"] for r in runs)
        print(f"{name:<14}{total:>10.0f}{rps:>10.0f}{p50:>10.1f}{p99:>10.1f}")


if __name__ == "__main__":
    asyncio.run(main())
