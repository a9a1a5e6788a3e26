"""The functions the scenarios run, as asyncflow tasks and as plain functions.

Module-level and decorated with `@task` under their own names, so process workers can
import them by reference. The `_raw` twins are what the baselines run.
"""

from __future__ import annotations

import threading
import time

from asyncflow import task

__all__ = (
    "GATE",
    "anoop",
    "anoop_raw",
    "block",
    "block_raw",
    "gated",
    "gated_raw",
    "gather_all",
    "gather_all_raw",
    "inc",
    "inc_raw",
    "noop",
    "noop_raw",
)


def noop_raw(x: int) -> int:
    return x


@task
def noop(x: int) -> int:
    return x


async def anoop_raw(x: int) -> int:
    return x


@task
async def anoop(x: int) -> int:
    return x


def inc_raw(x: int) -> int:
    return x + 1


@task
def inc(x: int) -> int:
    return x + 1


def gather_all_raw(xs: list[int]) -> int:
    return len(xs)


@task
def gather_all(xs: list[int]) -> int:
    return len(xs)


def block_raw() -> None:
    time.sleep(0.001)


@task
def block() -> None:
    time.sleep(0.001)


GATE = threading.Event()  # pending-future scenarios hold every run on this


def gated_raw(x: int) -> int:
    GATE.wait()
    return x


@task
def gated(x: int) -> int:
    GATE.wait()
    return x
