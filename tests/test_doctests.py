"""Every docstring example (`>>>`) in the package runs under doctest, and none skips.

The examples are found in every module of asyncflow, public and private, and in the
classes and functions each defines. Public objects report their public module as
`__module__` (see `asyncflow/_public.py`), which is what doctest's own "was it defined
here?" test reads: it would search `TaskFuture` under `asyncflow.futures`, with that
file's line numbers. `DefinedHere` asks the code instead (the file a function's code,
or a class's methods' code, comes from), so each example is found once, in the module
that defines it, with its globals and its real line numbers.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import types
from pathlib import Path
from typing import Any

import pytest
from helpers import DASK_THREADS

import asyncflow


def modules() -> list[str]:
    """Every module of the package, private ones included."""
    names = ["asyncflow"]
    names += [info.name for info in pkgutil.walk_packages(asyncflow.__path__, "asyncflow.")]
    return sorted(names)


def code_file(obj: Any) -> str | None:
    """The source file of a function's code (through wrappers, static and class
    methods, properties), or None for what has no code of its own."""
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if isinstance(obj, property):
        obj = obj.fget
    obj = inspect.unwrap(obj) if callable(obj) else obj
    code = getattr(obj, "__code__", None)
    return code.co_filename if isinstance(code, types.CodeType) else None


class DefinedHere(doctest.DocTestFinder):
    """A finder that keeps an object when its code is in the module's file."""

    def _from_module(self, module: Any, object: Any) -> bool:
        if inspect.isclass(object):
            files = {code_file(member) for member in vars(object).values()} - {None}
            if files:
                return module.__file__ in files
            return bool(module.__name__ == object.__module__)
        if code_file(object) is not None:
            return code_file(object) == module.__file__
        return bool(super()._from_module(module, object))


def find_doctests() -> list[doctest.DocTest]:
    """Each docstring example of the package, with the globals of its own module."""
    finder = DefinedHere(exclude_empty=True)
    found = []
    for name in modules():
        module = importlib.import_module(name)
        found += [t for t in finder.find(module, name, globs=vars(module).copy()) if t.examples]
    return found


# Dask keeps process-wide helper threads once a cluster has run.
DASK = pytest.mark.allow_threads(*DASK_THREADS)


def case(test: doctest.DocTest) -> Any:
    marks = [DASK] if test.name.startswith("asyncflow.contrib.dask") else []
    return pytest.param(test, id=test.name, marks=marks)


DOCTESTS = find_doctests()


def test_doctests_are_found_in_public_and_private_modules() -> None:
    files = {Path(t.filename or "").name for t in DOCTESTS}
    assert {"__init__.py", "futures.py", "settings.py", "_states.py", "_resolver.py"} <= files
    assert sum(len(t.examples) for t in DOCTESTS) >= 60


def test_no_docstring_example_is_skipped() -> None:
    skipping = [
        f"{t.name} (line {(t.lineno or 0) + ex.lineno + 1})"
        for t in DOCTESTS
        for ex in t.examples
        if ex.options.get(doctest.SKIP)
    ]
    assert skipping == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize("test", [case(t) for t in DOCTESTS])
def test_docstring_examples_run(test: doctest.DocTest) -> None:
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    output: list[str] = []
    result = runner.run(test, out=output.append)
    assert result.failed == 0, "".join(output)
