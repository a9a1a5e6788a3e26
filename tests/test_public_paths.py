"""Public paths: every class and function in every public module's `__all__` reports a
public module as its `__module__`, the path leads back to the very object, and
asyncflow's exceptions pickle by that path, also from a process-pool worker.

The public modules are found by walking the package (every module with no `_` part),
so a new public module is checked without editing this file.
"""

from __future__ import annotations

import importlib
import json
import pickle
import subprocess
import sys
from typing import Any

import pytest
from helpers import public_modules, public_objects

from asyncflow import exceptions, task
from asyncflow._public import is_private_path
from asyncflow.task_runners import ProcessPoolTaskRunner

PUBLIC_OBJECTS = public_objects()


def test_the_walk_finds_every_public_module() -> None:
    assert set(public_modules()) >= {
        "asyncflow",
        "asyncflow.contrib",
        "asyncflow.contrib.dask",
        "asyncflow.exceptions",
        "asyncflow.futures",
        "asyncflow.settings",
        "asyncflow.states",
        "asyncflow.task_runners",
        "asyncflow.web",
    }
    assert not [m for m in public_modules() if "._" in m]
    assert len(PUBLIC_OBJECTS) >= 40  # the walk really reached the objects


def test_private_paths_are_told_apart() -> None:
    assert is_private_path("asyncflow._core._exceptions")
    assert is_private_path("asyncflow.contrib._x")
    assert not is_private_path("asyncflow.exceptions")
    assert not is_private_path("asyncflow")
    assert not is_private_path("_thread")  # not ours
    assert not is_private_path(None)


@pytest.mark.parametrize(
    ("module", "name", "obj"), PUBLIC_OBJECTS, ids=[f"{m}.{n}" for m, n, _ in PUBLIC_OBJECTS]
)
def test_each_public_object_reports_a_public_path_that_leads_back(
    module: str, name: str, obj: Any
) -> None:
    home = obj.__module__
    assert home.split(".")[0] == "asyncflow"
    assert not is_private_path(home), f"{module}.{name}.__module__ is {home!r}"
    found: Any = importlib.import_module(home)
    for part in obj.__qualname__.split("."):
        found = getattr(found, part)
    assert found is obj, f"{home}.{obj.__qualname__} is not {module}.{name}"


def test_objects_exported_twice_report_their_specific_home() -> None:
    # Run in a fresh interpreter that imports only the root: the home must not depend
    # on which public module the user imported first.
    code = (
        "import json; from asyncflow import FutureList, State, TaskFuture, task\n"
        "from asyncflow.exceptions import UpstreamFailed\n"
        "print(json.dumps([c.__module__ for c in (TaskFuture, FutureList, State, task, "
        "UpstreamFailed)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert json.loads(out.stdout) == [
        "asyncflow.futures",
        "asyncflow.futures",
        "asyncflow.states",
        "asyncflow",
        "asyncflow.exceptions",
    ]
    assert exceptions.UpstreamFailed.__module__ == "asyncflow.exceptions"
    assert "asyncflow.exceptions.UpstreamFailed" in repr(exceptions.UpstreamFailed)


# ---- pickles ---------------------------------------------------------------------------


def sample(name: str) -> BaseException:
    """An instance of the exception class `exceptions.<name>`, with a message."""
    cls = getattr(exceptions, name)
    if cls is exceptions.RemoteError:
        return cls("KeyError", "'k'", "Traceback ...")
    if cls is exceptions.TaskExited:
        return cls("task 'x' called sys.exit(3)", 3)
    error: BaseException = cls(f"a {name} for the test")
    return error


def same_error(a: BaseException, b: BaseException) -> bool:
    return type(a) is type(b) and str(a) == str(b) and vars(a) == vars(b)


@pytest.mark.parametrize("name", exceptions.__all__)
def test_exceptions_pickle_by_their_public_path(name: str) -> None:
    error = sample(name)
    data = pickle.dumps(error)
    assert b"asyncflow.exceptions" in data
    assert b"_core" not in data
    assert same_error(pickle.loads(data), error)


def test_states_pickle_by_their_public_path() -> None:
    from asyncflow.states import State, StateType

    state = State(StateType.FAILED, "TimedOut", "took too long")
    data = pickle.dumps(state)
    assert b"asyncflow.states" in data
    assert b"_core" not in data
    assert pickle.loads(data) == state
    assert pickle.loads(pickle.dumps(StateType.CRASHED)) is StateType.CRASHED


@task
def raise_named(name: str) -> None:
    raise sample(name)


@pytest.mark.timeout(30)
def test_exceptions_raised_in_a_worker_process_come_back_as_themselves() -> None:
    with ProcessPoolTaskRunner(max_workers=2) as runner:
        futures = {name: runner.submit(raise_named, {"name": name}) for name in exceptions.__all__}
        errors = {name: fut.exception() for name, fut in futures.items()}
    for name, error in errors.items():
        assert error is not None, name
        assert same_error(error, sample(name)), (name, error)
