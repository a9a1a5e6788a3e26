"""Tasks and flows on classes: instance methods, class methods and static methods.

`Task` and `Flow` are descriptors. Looked up on an instance, a task defined on a
method gives a *bound* task whose calls, submits and maps pass the instance as the
first argument, as Python does for a method:

    >>> from asyncflow import task
    >>> class Counter:
    ...     def __init__(self, step: int) -> None:
    ...         self.step = step
    ...     @task
    ...     def add(self, x: int) -> int:
    ...         return x + self.step
    >>> Counter(10).add(1), Counter(10).add.submit(2).result()
    (11, 12)
    >>> Counter(1).add.map([1, 2]).result()
    [2, 3]

`@task @classmethod` binds the class, `@task @staticmethod` binds nothing (so does
`@staticmethod @task`; `@classmethod @task` works where `classmethod` hands the lookup
on to the task: Python 3.10 to 3.12). Looked up on the class, an instance method's
task is the task itself: `Counter.add(counter, 1)`.

The design:

- A bound task is cheap and made per lookup (not cached per instance): a copy of the
  task's attribute dict, so `name`, `fn`, `retries`, the hook lists... read the same,
  in a subclass of the task's class (made once per class from a mixin here, so this
  module imports neither `_tasks` nor `_flows`) whose entry points (`__call__`,
  `submit`, `map`, `map_iter`) call the *original* task with
  the receiver put first. Runners, runs and per-task caches (a process pool's pickled
  functions) only see the original, so nothing grows per lookup, and a bound task
  keeps its instance alive no longer than the caller holds it. Its name is the
  function's, as in Prefect.
- The receiver travels wrapped in `opaque`: it reaches the function as the very
  object, is never searched for futures (a dataclass or list instance is not walked or
  rebuilt) and is never mapped over (`.map()` broadcasts it).
- Task workers (`.delay()`, `.apply_async()`) import a task by module and name: a
  bound task refuses them with a `TypeError` at the call, rather than send a run no
  worker could execute.
- A process runner pickles the receiver with the other arguments (cloudpickle for
  what plain pickle cannot do), so such a run works on a copy of the instance: changes
  the method makes to `self` stay in the worker, as for any argument.
"""

from __future__ import annotations

import functools
from typing import Any

from ._arguments import opaque
from ._streaming import MapIter

__all__ = ("CLASSMETHOD", "FUNCTION", "STATICMETHOD", "bind_flow", "bind_task", "unwrap_method")

FUNCTION = "function"
CLASSMETHOD = "classmethod"
STATICMETHOD = "staticmethod"


def unwrap_method(fn: Any) -> tuple[Any, str]:
    """`(function, kind)`: the function inside a `classmethod` / `staticmethod` object
    and which of the two it was; anything else is returned as it is, kind `FUNCTION`."""
    if isinstance(fn, classmethod):
        return fn.__func__, CLASSMETHOD
    if isinstance(fn, staticmethod):
        return fn.__func__, STATICMETHOD
    return fn, FUNCTION


def rewrap_method(fn: Any, kind: str) -> Any:
    """The inverse of `unwrap_method`, for `with_options` copies."""
    if kind == CLASSMETHOD:
        return classmethod(fn)
    if kind == STATICMETHOD:
        return staticmethod(fn)
    return fn


def _receiver(kind: str, instance: Any, owner: Any) -> Any:
    """What a lookup binds as the first argument; None: nothing to bind."""
    if kind == CLASSMETHOD:
        return owner if owner is not None else type(instance)
    if kind == STATICMETHOD:
        return None
    return instance  # None when looked up on the class: the task itself


def bind_task(task: Any, kind: str, instance: Any, owner: Any) -> Any:
    """`task.__get__(instance, owner)` for a task whose function is of `kind`."""
    target = _receiver(kind, instance, owner)
    return task if target is None else _bound(_BoundTask, task, target, instance, owner)


def bind_flow(flow: Any, kind: str, instance: Any, owner: Any) -> Any:
    """`flow.__get__(instance, owner)` for a flow whose function is of `kind`."""
    target = _receiver(kind, instance, owner)
    return flow if target is None else _bound(_BoundFlow, flow, target, instance, owner)


def _bound(mixin: type, original: Any, target: Any, instance: Any, owner: Any) -> Any:
    cls: type = type(original)
    bound: Any = object.__new__(_bound_class(mixin, cls))
    bound.__dict__.update(original.__dict__)
    bound.__dict__.update(
        _original=original, _receiver=opaque(target), _instance=instance, _owner=owner
    )
    return bound


@functools.cache
def _bound_class(mixin: type, cls: type) -> type:
    """`cls` (`Task`, `Flow`, or a subclass) with the bound entry points of `mixin`:
    a subclass made on the first lookup, from the class of the object looked up (so
    this module need not import `_tasks` and `_flows`, which import it)."""
    return type(f"Bound{cls.__name__}", (mixin, cls), {"__module__": cls.__module__})


class _Bound:
    """What the bound classes share: the original and what it is bound to."""

    _original: Any
    _receiver: opaque[Any]
    _instance: Any
    _owner: Any

    def with_options(self, **options: Any) -> Any:
        return self._original.with_options(**options).__get__(self._instance, self._owner)

    def __repr__(self) -> str:
        what = self._receiver.value
        shown = what.__qualname__ if isinstance(what, type) else f"{type(what).__qualname__} object"
        return f"{self._original!r} bound to <{shown}>"


class _BoundTask(_Bound):
    """A task looked up on an instance (or a class method's task on its class)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._original(self._receiver, *args, **kwargs)

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        return self._original.submit(self._receiver, *args, **kwargs)

    def map(self, *args: Any, **kwargs: Any) -> Any:
        return self._original.map(self._receiver, *args, **kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        raise self._not_for_workers()

    def apply_async(self, args: Any = (), kwargs: Any = None, wait_for: Any = None) -> Any:
        raise self._not_for_workers()

    def _not_for_workers(self) -> TypeError:
        return TypeError(
            f"task {self._original.name!r} is bound to {self._receiver.value!r}: task "
            "workers import a task by its module and name, so a method's task cannot be "
            "sent to them; use .submit(), or send a module-level task the object's data"
        )

    def map_iter(
        self, *iterables: Any, max_concurrency: int = 64, ordered: bool = True, **static: Any
    ) -> Any:
        # Element i of each iterable is the run's positional argument after the
        # receiver (bound by `_bind` below); the runs go to the original task.
        return MapIter(self._original, iterables, static, self._bind, max_concurrency, ordered)

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        # `super()` is `Task` here: the class `_bound_class` combines this mixin with.
        bound: dict[str, Any] = super()._bind((self._receiver, *args), kwargs)  # type: ignore[misc]
        return bound


class _BoundFlow(_Bound):
    """A flow looked up on an instance (or a class method's flow on its class)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._original(self._receiver, *args, **kwargs)
