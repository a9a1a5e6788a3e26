"""Public paths: what a public class or function reports as its module.

asyncflow defines its objects in private modules (`asyncflow._core._exceptions`, ...)
and re-exports them from thin public ones. Left alone, `UpstreamFailed.__module__`
would be `asyncflow._core._exceptions`, so tracebacks, reprs, the API reference and
pickles would show a path users must not import. Every public module ends with
`publish(__name__, __all__, globals())`; that one rule sets `__module__` of each class
and function it exports to the public module.

The first public module that claims an object keeps it: `asyncflow/__init__.py`
imports `asyncflow.futures`, `.states` and `.exceptions` before it publishes, so
`TaskFuture` says `asyncflow.futures` and `State` says `asyncflow.states` (their
specific homes, as in Prefect), however the user imports them.

Pickle finds a class by `__module__` + `__qualname__`, and every public module
re-exports what it publishes, so a pickled `asyncflow.exceptions.TaskTimeout` loads in
any process that can import asyncflow. The process runner's by-name shipping
(`_runners/_by_name.py`) reads the *user's* function's module, which this never
touches.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ("is_private_path", "publish")


def is_private_path(module: object) -> bool:
    """True for a dotted module path inside asyncflow with a private (`_`) part."""
    if not isinstance(module, str) or not module.startswith("asyncflow."):
        return False
    return any(part.startswith("_") for part in module.split("."))


def publish(module: str, names: Iterable[str], namespace: Mapping[str, Any]) -> None:
    """Make each class and function named in `names` report `module` as its home,
    unless it already reports a public one (the first public claimant keeps it)."""
    for name in names:
        if name not in namespace:  # loaded on first access: its `__getattr__` publishes it
            continue
        obj = namespace[name]
        if isinstance(obj, (type, types.FunctionType)) and is_private_path(obj.__module__):
            obj.__module__ = module
