"""Fixtures of the broker contract suite: `broker`, a fresh broker of every backend
(see backends.py) on a `clock` that only the test moves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from asyncflow._broker import Broker

from .backends import BACKENDS, FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=sorted(BACKENDS))
def broker(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Broker]:
    built = BACKENDS[request.param](tmp_path, clock)
    yield built
    built.close()
