"""Run the typing-check module: its flows must also work at runtime."""

from __future__ import annotations

from typing_checks import run_all


def test_typing_checks_run() -> None:
    ints, data = run_all()
    assert ints == [0, 2, 4]
    assert data == b"k"
