"""The leak checks in conftest.py must be able to fail."""

from __future__ import annotations

import subprocess
import sys
import threading

from conftest import _leaked_children, _leaked_threads, child_pids


def test_leaked_thread_is_reported() -> None:
    before = set(threading.enumerate())
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="leaky-thread")
    thread.start()
    try:
        assert _leaked_threads(before, (), grace=0.05) == ["leaky-thread"]
        assert _leaked_threads(before, ("leaky",), grace=0.05) == []
    finally:
        stop.set()
        thread.join()
    assert _leaked_threads(before, ()) == []


def test_leaked_child_is_reported() -> None:
    before = child_pids()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        assert _leaked_children(before, grace=0.05) == {proc.pid}
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()
    assert _leaked_children(before) == set()
