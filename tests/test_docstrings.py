"""Every public class, method and property has a docstring; the subtle ones say what
they raise.

Why a test and not ruff's `D` rules: the public surface is what the public modules'
`__all__` export, and nearly all of it is defined in private modules
(`asyncflow/_core/_future.py`, ...), which pydocstyle treats as private and skips; the
`D` rules on the private modules instead would demand docstrings on every internal
helper. Walking `__all__` checks exactly what users see and the API reference shows.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest
from helpers import public_modules, public_objects

PUBLIC_OBJECTS = public_objects()

# Members whose behaviour is subtle enough that their docstring must say what they raise.
MUST_SAY_RAISES = (
    "asyncflow.futures.TaskFuture.result",
    "asyncflow.futures.TaskFuture.exception",
    "asyncflow.futures.TaskFuture.wait",
    "asyncflow.futures.TaskFuture.wait_async",
    "asyncflow.futures.FutureList.result",
    "asyncflow.futures.FutureList.wait",
    "asyncflow.futures.wait",
    "asyncflow.futures.as_completed",
    "asyncflow.Task.submit",
    "asyncflow.Task.map",
    "asyncflow.Task.map_iter",
    "asyncflow.task",
    "asyncflow.flow",
    "asyncflow.task_runners.TaskRunner.submit",
    "asyncflow.task_runners.TaskRunner.map",
)


def own_doc(obj: Any) -> str:
    """The object's own docstring, not one Python generated for it."""
    doc = (obj.__doc__ or "").strip()
    generated = f"{getattr(obj, '__name__', '')}("  # namedtuple: "Name(field, ...)"
    return "" if doc.startswith(generated) else doc


def public_members(cls: type) -> list[tuple[str, Any]]:
    """(name, function or property) of `cls`'s public members defined by asyncflow,
    inherited ones included (from asyncflow's own base classes only)."""
    members = []
    for name in dir(cls):
        if name.startswith("_"):
            continue
        owner = next(k for k in cls.__mro__ if name in vars(k))
        if not owner.__module__.startswith("asyncflow"):
            continue  # list.append, Exception.add_note, ...
        attr = vars(owner)[name]
        if isinstance(attr, (staticmethod, classmethod)):
            attr = attr.__func__
        if isinstance(attr, property) or inspect.isfunction(attr):
            members.append((name, attr))
    return members


def missing_docstrings(objects: list[tuple[str, str, Any]]) -> list[str]:
    missing = []
    for module, name, obj in objects:
        if not own_doc(obj):
            missing.append(f"{module}.{name}")
        if isinstance(obj, type):
            for member, attr in public_members(obj):
                # inspect.getdoc: an override may inherit its base's documented contract
                doc = inspect.getdoc(attr) if isinstance(attr, property) else None
                doc = doc or inspect.getdoc(getattr(obj, member))
                if not doc:
                    missing.append(f"{module}.{name}.{member}")
    return missing


def test_every_public_module_has_a_docstring() -> None:
    names = public_modules()
    assert [n for n in names if not (importlib.import_module(n).__doc__ or "").strip()] == []


def test_every_public_class_function_method_and_property_has_a_docstring() -> None:
    assert len(PUBLIC_OBJECTS) >= 40
    assert missing_docstrings(PUBLIC_OBJECTS) == []


def test_the_check_finds_what_is_missing() -> None:
    class Documented:
        """Has one."""

        def method(self) -> None:
            """Has one."""

    class Bare:
        def method(self) -> None:
            pass

        @property
        def prop(self) -> int:
            return 1

        def _private(self) -> None:
            pass

    def bare_function() -> None:
        pass

    Documented.__module__ = Bare.__module__ = "asyncflow.fake"
    objects = [("m", "Documented", Documented), ("m", "Bare", Bare), ("m", "f", bare_function)]
    assert missing_docstrings(objects) == ["m.Bare", "m.Bare.method", "m.Bare.prop", "m.f"]


def _find(path: str) -> Any:
    module, _, rest = path.partition(".")
    obj: Any = importlib.import_module(module)
    parts = rest.split(".")
    for i, part in enumerate(parts):
        candidate = getattr(obj, part, None)
        if candidate is None:  # a submodule
            obj = importlib.import_module(".".join([module, *parts[: i + 1]]))
        else:
            obj = candidate
    return obj


@pytest.mark.parametrize("path", MUST_SAY_RAISES)
def test_subtle_members_say_what_they_raise(path: str) -> None:
    doc = inspect.getdoc(_find(path)) or ""
    assert "\nRaises:\n" in doc, f"{path}'s docstring has no Raises: section"
