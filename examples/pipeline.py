"""asyncflow's main example: a small text-analytics pipeline.

It mixes async tasks (simulated I/O on the event loop), sync tasks (on a thread
pool), CPU-bound tasks (in worker processes, in a nested flow), `.submit`, `.map`,
`unmapped`, `wait_for`, and a failure handled with `raise_on_failure=False`, then
prints what ran where.

Run it with:  python examples/pipeline.py
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import multiprocessing
import os
import threading
import time

from asyncflow import flow, task, unmapped
from asyncflow.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

DOCUMENTS = {
    "alpha": "the quick brown fox jumps over the lazy dog",
    "beta": "asyncio tasks and threads work together in one flow",
    "gamma": "the fox and the dog share the flow of the river",
    "broken": "",  # fetching this one fails: the pipeline reports it and goes on
}

log: list[str] = []
log_lock = threading.Lock()


def record(what: str) -> None:
    where = threading.current_thread().name
    try:
        asyncio.get_running_loop()
        where += " (event loop)"
    except RuntimeError:
        pass
    with log_lock:
        log.append(f"{what:<28} ran on {where}")


@task
async def fetch(name: str) -> str:
    """Async I/O: runs on the event loop, concurrently with the other fetches."""
    await asyncio.sleep(0.05)
    record(f"fetch({name})")
    text = DOCUMENTS[name]
    if not text:
        raise ValueError(f"document {name!r} is empty")
    return text


@task
def tokenize(text: str, stopwords: set[str]) -> list[str]:
    """Sync CPU-light work: runs on a worker thread."""
    record(f"tokenize({text.split()[0]}...)")
    return [w for w in text.split() if w not in stopwords]


@task
def count(words: list[str]) -> dict[str, int]:
    record(f"count({len(words)} words)")
    return dict(collections.Counter(words))


@task
def merge(counts: list[dict[str, int]]) -> dict[str, int]:
    record("merge")
    total: collections.Counter[str] = collections.Counter()
    for c in counts:
        total.update(c)
    return dict(total.most_common(5))


@task
def announce() -> None:
    record("announce")


@task
def fingerprint(text: str, rounds: int) -> tuple[str, str]:
    """CPU-bound: runs in a worker process (its own interpreter and GIL). It cannot
    append to this process's log, so it returns where it ran."""
    digest = text.encode()
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    worker = multiprocessing.current_process().name
    return digest.hex()[:12], f"{worker} (pid {os.getpid()})"


@flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
def fingerprints(texts: list[str]) -> list[tuple[str, str]]:
    return fingerprint.map(texts, unmapped(50_000))


@flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
def word_counts(names: list[str]) -> dict[str, int]:
    texts = fetch.map(names)  # async tasks, one per document
    # Keep the documents that could be fetched; report the others.
    good = []
    for name, fut in zip(names, texts, strict=True):
        value = fut.result(raise_on_failure=False)
        if isinstance(value, Exception):
            print(f"  ! skipped {name}: {type(value).__name__}: {value}")
        else:
            good.append(fut)
    # A nested flow with its own runner: CPU-bound work in worker processes.
    for digest, where in fingerprints([f.result() for f in good]):
        with log_lock:
            log.append(f"{'fingerprint(' + digest[:6] + '...)':<28} ran on {where}")
    words = tokenize.map(good, unmapped({"the", "and", "of", "in", "one"}))
    counts = count.map(words)  # each waits for its own tokenize run
    done = announce.submit(wait_for=counts)  # ordering without data
    return merge.submit(counts, wait_for=[done]).result()


@flow
async def main() -> dict[str, int]:
    # An async flow can call a sync flow; it runs with its own task runner.
    started = time.perf_counter()
    top = await asyncio.to_thread(word_counts, list(DOCUMENTS))
    print(f"  pipeline took {time.perf_counter() - started:.3f} s")
    return top


if __name__ == "__main__":
    print("asyncflow example pipeline")
    top = asyncio.run(main())
    print("what ran where:")
    for line in log:
        print("  " + line)
    print("top words:", top)
    if top.get("fox") != 2 or top.get("dog") != 2:
        raise SystemExit(f"unexpected word counts: {top}")
