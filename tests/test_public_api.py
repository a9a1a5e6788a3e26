"""The public surface: tuple `__all__` in every public module, the engine core's
layering, and a lean `import asyncflow`."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

PUBLIC_MODULES = (
    "asyncflow",
    "asyncflow.futures",
    "asyncflow.task_runners",
    "asyncflow.states",
    "asyncflow.exceptions",
    "asyncflow.settings",
    "asyncflow.runs",
)
PACKAGE = Path(importlib.import_module("asyncflow").__file__ or "").parent
CORE = PACKAGE / "_core"


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_a_tuple_naming_what_exists(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert isinstance(exported, tuple), f"{name}.__all__ is a {type(exported).__name__}"
    assert exported, f"{name}.__all__ is empty"
    assert len(set(exported)) == len(exported), f"{name}.__all__ has duplicates"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names missing attributes: {missing}"
    assert all(isinstance(n, str) for n in exported)


def test_spec_public_names_are_exported() -> None:
    expected = {
        "asyncflow": {
            "task",
            "flow",
            "unmapped",
            "allow_failure",
            "quote",
            "TaskFuture",
            "FutureList",
            "State",
        },
        "asyncflow.futures": {"wait", "as_completed", "TaskFuture", "FutureList"},
        "asyncflow.task_runners": {
            "Run",
            "TaskRunner",
            "ThreadPoolTaskRunner",
            "ProcessPoolTaskRunner",
        },
        "asyncflow.states": {"State", "StateType"},
        "asyncflow.exceptions": {
            "UpstreamFailed",
            "MappingLengthMismatch",
            "MappingMissingIterable",
            "RunnerNotStarted",
            "WouldDeadlock",
            "CircularDependency",
        },
    }
    for name, names in expected.items():
        module = importlib.import_module(name)
        assert names <= set(module.__all__), (name, names - set(module.__all__))
    import asyncflow

    assert asyncflow.exceptions is importlib.import_module("asyncflow.exceptions")


def test_every_exception_derives_from_the_base() -> None:
    from asyncflow import exceptions

    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        assert issubclass(cls, exceptions.AsyncflowError), name
    assert issubclass(exceptions.RunnerNotStarted, RuntimeError)
    assert issubclass(exceptions.WouldDeadlock, RuntimeError)
    assert issubclass(exceptions.MappingLengthMismatch, ValueError)
    assert issubclass(exceptions.MappingMissingIterable, ValueError)


# ---- layering ------------------------------------------------------------------------------


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[str]:
    """Absolute names of every module `path` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: -(node.level - 1)]
                prefix = ".".join(base)
                module = f"{prefix}.{node.module}" if node.module else prefix
            else:
                assert node.module is not None
                module = node.module
            names.append(module)
            # `from pkg import x`: x may be a submodule, count it too
            names.extend(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_import_resolution_helper_sees_relative_imports() -> None:
    # The check below must be able to fail: the helper resolves `from .. import x`.
    imports = _imports(PACKAGE / "_runners" / "_thread.py")
    assert "asyncflow._core.WorkerPool" in imports  # from .._core import WorkerPool
    assert "asyncflow.settings" in imports  # from ..settings import get_settings
    assert "asyncflow._runners._current" in imports  # from ._current import ...


CORE_FILES = sorted(CORE.glob("*.py"))


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_imports_nothing_from_the_rest_of_asyncflow(path: Path) -> None:
    outside = [
        name
        for name in _imports(path)
        if (name == "asyncflow" or name.startswith("asyncflow."))
        and not (name == "asyncflow._core" or name.startswith("asyncflow._core."))
    ]
    assert not outside, f"{path.name} imports {outside} from outside asyncflow._core"


def test_core_files_found() -> None:
    assert {p.name for p in CORE_FILES} >= {"_resolver.py", "_engine.py", "_future.py"}


def test_resolver_imports_no_asyncio() -> None:
    imports = _imports(CORE / "_resolver.py")
    assert not [n for n in imports if n == "asyncio" or n.startswith("asyncio.")], imports
    assert not [n for n in imports if n.split(".")[0] in {"anyio", "trio", "threading"}], imports


# ---- import cost ------------------------------------------------------------------------------


def test_import_asyncflow_stays_lean() -> None:
    code = (
        "import sys, json, asyncflow, asyncflow.futures, asyncflow.task_runners, "
        "asyncflow.states, asyncflow.exceptions, asyncflow.settings\n"
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('dask', 'distributed', 'cloudpickle', 'uvloop', 'starlette', "
        "'uvicorn', 'httpx', 'multiprocessing'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert json.loads(out.stdout) == []
