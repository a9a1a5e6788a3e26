"""Which loop the engine portal uses, and why, is logged at DEBUG on "asyncflow"
(issue 11, defect 10c)."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from asyncflow._core import _portal


def _new_loop_logged(caplog: pytest.LogCaptureFixture) -> tuple[asyncio.AbstractEventLoop, str]:
    with caplog.at_level(logging.DEBUG, logger="asyncflow"):
        loop = _portal._new_loop()
    loop.close()
    messages = [r.getMessage() for r in caplog.records if r.name == "asyncflow"]
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name == "asyncflow")
    return loop, "\n".join(messages)


def test_disabled_by_the_environment(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ASYNCFLOW_NO_UVLOOP", "1")
    loop, logged = _new_loop_logged(caplog)
    assert "uvloop" not in type(loop).__module__
    assert "asyncio" in logged
    assert "ASYNCFLOW_NO_UVLOOP" in logged


def test_not_installed(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("ASYNCFLOW_NO_UVLOOP", raising=False)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    loop, logged = _new_loop_logged(caplog)
    assert "uvloop" not in type(loop).__module__
    assert "not installed" in logged


def test_uvloop_when_installed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class FakeUvloop:
        """Stands in for uvloop so the test does not depend on it being installed."""

        __version__ = "9.9"

        @staticmethod
        def new_event_loop() -> asyncio.AbstractEventLoop:
            return asyncio.new_event_loop()

    monkeypatch.delenv("ASYNCFLOW_NO_UVLOOP", raising=False)
    monkeypatch.setitem(sys.modules, "uvloop", FakeUvloop)
    _, logged = _new_loop_logged(caplog)
    assert "engine loop: uvloop 9.9" in logged
