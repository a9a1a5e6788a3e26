"""The core's API is `asyncflow._core.__all__`: the rest of asyncflow imports the core
through the package only (`from asyncflow._core import NAME`, or `from .._core import
NAME`), and only names listed there; never a core module (`asyncflow._core._engine`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import asyncflow
import asyncflow._core as core

ROOT = Path(asyncflow.__file__).parent
CORE = "asyncflow._core"


def _package(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1])


def core_imports(source: str, package: str) -> list[tuple[str, str]]:
    """`(module, name)` for every import from the core in `source` (name "" for a bare
    `import asyncflow._core...`), relative imports resolved against `package`."""
    found: list[tuple[str, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(a.name, "") for a in node.names if a.name.startswith(CORE)]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            if base == CORE or base.startswith(CORE + "."):
                found += [(base, a.name) for a in node.names]
            elif base == "asyncflow":
                found += [(base, a.name) for a in node.names if a.name == "_core"]
    return found


def violations(source: str, package: str) -> list[str]:
    allowed = set(core.__all__)
    return [
        f"{module}.{name}" if name else module
        for module, name in core_imports(source, package)
        if module != CORE or name not in allowed
    ]


OUTER = sorted(p for p in ROOT.rglob("*.py") if "_core" not in p.relative_to(ROOT).parts[:1])


@pytest.mark.parametrize("path", OUTER, ids=lambda p: str(p.relative_to(ROOT)))
def test_outer_modules_use_only_the_core_api(path: Path) -> None:
    assert violations(path.read_text(), _package(path)) == []


def test_the_core_api_is_a_sorted_tuple_of_real_names() -> None:
    assert isinstance(core.__all__, tuple)
    assert list(core.__all__) == sorted(core.__all__, key=lambda n: (not n.isupper(), n))
    assert [n for n in core.__all__ if not hasattr(core, n)] == []


def test_the_check_can_fail() -> None:
    """Each way around the API is caught; the allowed form is not."""
    bad = (
        "from .._core import _engine\n"
        "from .._core._future import TaskFuture\n"
        "import asyncflow._core._portal\n"
        "from asyncflow import _core\n"
        "from .._core import not_exported\n"
    )
    assert violations(bad, "asyncflow._runners") == [
        "asyncflow._core._engine",
        "asyncflow._core._future.TaskFuture",
        "asyncflow._core._portal",
        "asyncflow._core",
        "asyncflow._core.not_exported",
    ]
    assert violations("from ._core import TaskFuture, wait\n", "asyncflow") == []
    assert len(OUTER) > 20
    assert ROOT / "_runners" / "_base.py" in OUTER
