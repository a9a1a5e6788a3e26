"""The backends the broker contract suite runs against, and its fake clock.

A backend joins the suite with one entry in `BACKENDS`: a function that builds a fresh,
empty broker in a test's temporary directory with the given clock (a Redis backend
would add `"redis": ...` here, skipped-by-fixture where no server runs)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from asyncflow._broker import Broker, MemoryBroker
from asyncflow._broker._sqlite import SQLiteBroker


class FakeClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


BrokerFactory = Callable[[Path, FakeClock], Broker]

BACKENDS: dict[str, BrokerFactory] = {
    "memory": lambda tmp, clock: MemoryBroker("contract", clock=clock),
    "sqlite": lambda tmp, clock: SQLiteBroker(tmp / "broker.db", clock=clock),
}
