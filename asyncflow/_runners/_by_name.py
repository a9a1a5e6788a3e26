"""Shipping a module-level task to another process by name, not by value.

`@task` replaces the function in its module by the `Task`, so pickle cannot find the
function under its own name (and cloudpickle would copy it by value, globals and all).
`task_function_ref(task)` pickles as "the function of the task at module.qualname";
the receiving process imports the module and takes `.fn`. Used by the process and
Dask runners.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__all__ = ("task_function_ref",)


class _TaskFunction:
    """Pickles as "the function of the task at module.qualname": `@task` replaced the
    function in its module by the task, so pickle cannot find the function by name."""

    __slots__ = ("module", "qualname")

    def __init__(self, module: str, qualname: str) -> None:
        self.module = module
        self.qualname = qualname

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (_load_task_function, (self.module, self.qualname))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Callable where it has not travelled (Dask checks `callable` before pickling).
        return _load_task_function(self.module, self.qualname)(*args, **kwargs)


def _load_task_function(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return getattr(obj, "fn", obj)


def task_function_ref(task: Any) -> _TaskFunction | None:
    """A by-name reference to a module-level task's function, if the worker can import
    it that way (not in `__main__`, not local); None otherwise."""
    fn = task.fn
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", "")
    if not module or module == "__main__" or "<locals>" in qualname:
        return None
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    # `obj.fn is fn`, not `obj is task`: a `with_options` copy shares the function.
    return _TaskFunction(module, qualname) if getattr(obj, "fn", None) is fn else None
