"""The tasks of the task-worker example (docs/workers.md): the web app sends them,
the worker executes them. Both import this module, so both find `report` by its key,
`tasks:report`."""

from __future__ import annotations

import asyncio
import hashlib

from asyncflow import task


@task(retries=2, retry_delay_seconds=1)
async def fetch(user_id: int) -> dict[str, int]:
    """Stands in for an HTTP call (retried on the worker if it fails)."""
    await asyncio.sleep(0.2)
    return {"user_id": user_id, "orders": user_id % 7}


@task(timeout_seconds=60)
def report(user_id: int, rounds: int = 200_000) -> dict[str, object]:
    """CPU-bound work on one of the worker's threads, a few hundred ms."""
    data = str(user_id).encode()
    for _ in range(rounds):
        data = hashlib.sha256(data).digest()
    return {"user_id": user_id, "digest": data.hex()[:16]}
