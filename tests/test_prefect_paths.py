"""Every Prefect import path asyncflow claims (issue 15): replacing `prefect` by
`asyncflow` in the import is the whole port. The list lives here, in one place;
docs/prefect-paths.md is its prose."""

from __future__ import annotations

import importlib
import inspect
import types

import pytest

from asyncflow._public import publish

# Prefect module -> the names asyncflow has under the same path (module renamed).
PREFECT_PATHS: dict[str, tuple[str, ...]] = {
    "prefect": (
        "Flow",
        "State",
        "Task",
        "allow_failure",
        "flow",
        "tags",
        "task",
        "unmapped",
    ),
    "prefect.flows": ("Flow", "flow"),
    "prefect.tasks": ("Task", "exponential_backoff", "task"),
    "prefect.futures": ("as_completed", "wait"),
    "prefect.task_runners": ("ProcessPoolTaskRunner", "TaskRunner", "ThreadPoolTaskRunner"),
    "prefect.states": (
        "Cancelled",
        "Completed",
        "Crashed",
        "Failed",
        "Pending",
        "Retrying",
        "Running",
        "State",
        "StateType",
    ),
    "prefect.utilities.annotations": ("allow_failure", "opaque", "quote", "unmapped"),
    "prefect.exceptions": ("MappingLengthMismatch", "MappingMissingIterable"),
    "prefect.context": ("tags",),
    "prefect.concurrency.sync": ("concurrency", "rate_limit"),
    "prefect.concurrency.asyncio": (
        "AcquireConcurrencySlotTimeoutError",
        "ConcurrencySlotAcquisitionError",
        "concurrency",
        "rate_limit",
    ),
}

# The public modules this issue added: thin, with a tuple __all__ and docstrings.
NEW_MODULES = (
    "asyncflow.flows",
    "asyncflow.tasks",
    "asyncflow.states",
    "asyncflow.utilities",
    "asyncflow.utilities.annotations",
    "asyncflow.context",
    "asyncflow.concurrency",
    "asyncflow.concurrency.sync",
    "asyncflow.concurrency.asyncio",
)

PAIRS = [(module, name) for module, names in PREFECT_PATHS.items() for name in names]


def ported(prefect_module: str) -> str:
    return "asyncflow" + prefect_module.removeprefix("prefect")


@pytest.mark.parametrize(("module", "name"), PAIRS, ids=[f"{m}.{n}" for m, n in PAIRS])
def test_the_prefect_import_works_with_the_package_renamed(module: str, name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {ported(module)} import {name}", namespace)  # the ported line, verbatim
    assert namespace[name] is not None
    assert name in importlib.import_module(ported(module)).__all__


def test_one_object_whatever_the_path() -> None:
    import asyncflow
    from asyncflow import flows, tasks
    from asyncflow.concurrency import asyncio as aconcurrency
    from asyncflow.concurrency import sync
    from asyncflow.utilities import annotations

    assert (tasks.task, tasks.Task, flows.flow, flows.Flow) == (
        asyncflow.task,
        asyncflow.Task,
        asyncflow.flow,
        asyncflow.Flow,
    )
    assert annotations.quote is asyncflow.quote
    assert annotations.unmapped is asyncflow.unmapped
    assert annotations.allow_failure is asyncflow.allow_failure
    errors = asyncflow.exceptions
    assert sync.AcquireConcurrencySlotTimeoutError is errors.AcquireConcurrencySlotTimeoutError
    assert aconcurrency.ConcurrencySlotAcquisitionError is errors.ConcurrencySlotAcquisitionError


@pytest.mark.parametrize("name", NEW_MODULES)
def test_new_modules_are_thin_and_documented(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} has no docstring"
    exported = module.__all__
    assert isinstance(exported, tuple)
    assert exported
    assert len(set(exported)) == len(exported)
    undocumented = [
        n
        for n in exported
        if not isinstance(getattr(module, n), types.ModuleType)
        and not inspect.getdoc(getattr(module, n))
    ]
    assert not undocumented, f"{name}: no docstring on {undocumented}"
    own = [
        n
        for n, value in vars(module).items()
        if not n.startswith("_")
        and n not in exported
        and not isinstance(value, types.ModuleType)
        and value is not publish  # the public-path helper every public module calls
    ]
    assert not own, f"{name} defines public names outside __all__: {own}"


def test_every_claimed_path_is_in_the_docs() -> None:
    from pathlib import Path

    docs = (Path(__file__).parent.parent / "docs" / "prefect-paths.md").read_text()
    missing = [m for m in PREFECT_PATHS if f"`{ported(m)}`" not in docs]
    assert not missing, f"docs/prefect-paths.md does not list {missing}"
