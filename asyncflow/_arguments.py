"""Task arguments: finding futures in them, resolving them, and expanding `.map()`.

Futures are found at the top level and inside list / tuple / set / frozenset /
dict values / dataclass fields, to any depth. Arguments with nothing to resolve are
passed through untouched (`identity(x) is x`).

    >>> from asyncflow import task
    >>> @task
    ... def show(x: object) -> str:
    ...     return repr(x)
    >>> first = show.submit(1)
    >>> show.submit([first, 2]).result()                  # `first` is waited for
    "['1', 2]"
    >>> show.submit(quote([first, 2])).result()           # passed as is, future and all
    "[<TaskFuture 'show' Completed>, 2]"
    >>> @task
    ... def pair(x: int, ys: list[int]) -> tuple[int, list[int]]:
    ...     return (x, ys)
    >>> pair.map([1, 2], unmapped([10, 20])).result()     # the second list is broadcast
    [(1, [10, 20]), (2, [10, 20])]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeVar

from ._core import (
    FutureList,
    MappingLengthMismatch,
    MappingMissingIterable,
    TaskFuture,
    WouldDeadlock,
    block_until_final,
    error_of,
    outcome,
    upstream_failed,
)

__all__ = (
    "Upstreams",
    "allow_failure",
    "expand_map",
    "find_upstreams",
    "opaque",
    "quote",
    "raise_if_upstream_failed",
    "resolve",
    "unmapped",
)

T = TypeVar("T", covariant=True)  # the wrappers only give their value out

# Types that never contain futures: skipped without further checks (the hot path).
_ATOMIC: frozenset[type] = frozenset(
    {int, float, complex, str, bytes, bool, type(None), range, bytearray}
)


class quote(Generic[T]):
    """Pass a value to a task untouched: futures inside it are not resolved.

    `t.map(quote([1, 2]))` maps over the list and hands each element over as is.
    """

    __slots__ = ("data",)

    def __init__(self, data: T) -> None:
        self.data = data

    def unquote(self) -> T:
        """The quoted value itself (the very same object)."""
        return self.data

    def __repr__(self) -> str:
        return f"quote({self.data!r})"


class unmapped(Generic[T]):
    """Broadcast an iterable argument of `.map()` to every run instead of mapping over it."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __getitem__(self, _index: object) -> T:
        return self.value

    def __repr__(self) -> str:
        return f"unmapped({self.value!r})"


class allow_failure(Generic[T]):
    """Run the downstream even if this upstream fails; it then receives the exception."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"allow_failure({self.value!r})"


class opaque(Generic[T]):
    """Await a future but do not look inside values: `opaque(fut)` passes the future's
    result, `opaque(x)` passes `x` as is, futures inside it untouched (Prefect's
    `opaque`). Saves walking a large dict or DataFrame; in `.map()` it is broadcast."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"opaque({self.value!r})"


Upstreams = list[tuple[TaskFuture[Any], bool]]


def find_upstreams(parameters: Mapping[str, Any]) -> tuple[Upstreams, bool]:
    """Futures in `parameters` as `(future, allow_failure)` pairs, and whether any
    parameter must be rebuilt before the call (it holds a future or a wrapper)."""
    found: Upstreams = []
    rebuild = False
    for value in parameters.values():
        if type(value) in _ATOMIC:
            continue
        if _collect(value, False, found, set()):
            rebuild = True
    return found, rebuild


def _collect(value: Any, allow: bool, found: Upstreams, seen: set[int]) -> bool:
    """Append futures inside `value` to `found`; True if `value` needs resolving."""
    cls = type(value)
    if cls in _ATOMIC:
        return False
    if isinstance(value, TaskFuture):
        found.append((value, allow))
        return True
    if cls is quote:
        return True
    if cls is opaque:  # only a future at the top is an upstream; nothing inside is looked at
        if isinstance(value.value, TaskFuture):
            found.append((value.value, allow))
        return True
    if cls is allow_failure:
        _collect(value.value, True, found, seen)
        return True
    if cls is unmapped:
        _collect(value.value, allow, found, seen)
        return True
    if isinstance(value, (list, tuple, set, frozenset, dict)) or _is_dataclass_instance(value):
        if id(value) in seen:  # a self-referencing container
            return False
        seen.add(id(value))
        needs = False
        for item in _children(value):  # no short-circuit: every future must be found
            if _collect(item, allow, found, seen):
                needs = True
        return needs
    return False


def _is_dataclass_instance(value: Any) -> bool:
    # What dataclasses.is_dataclass checks, without importing dataclasses at startup.
    return hasattr(type(value), "__dataclass_fields__")


def _dataclass_field_names(value: Any) -> list[str]:
    from dataclasses import fields  # lazy: dataclass arguments are rare

    return [f.name for f in fields(value)]


def _children(value: Any) -> Iterable[Any]:
    if isinstance(value, dict):
        return value.values()
    if isinstance(value, (list, tuple, set, frozenset)):
        return value
    return [getattr(value, name) for name in _dataclass_field_names(value)]


def upstream_value(fut: TaskFuture[Any], allow: bool) -> Any:
    """The value a final upstream contributes to its downstream's arguments."""
    if allow or error_of(fut) is None:
        return outcome(fut, raise_on_failure=False)  # its value, or its exception object
    raise upstream_failed(fut)


def raise_if_upstream_failed(upstreams: Upstreams, name: str, kind: str = "task") -> None:
    """For direct calls (of a task or a flow, `kind`): raise `UpstreamFailed` for the
    first failed, not allowed upstream."""
    for fut, allow in upstreams:
        if error_of(fut) is not None and not allow:
            outcome(fut, raise_on_failure=False)  # marks it observed: its error is reported here
            raise upstream_failed(fut, f"{kind} {name!r} did not run: its ")


def resolve(value: Any, allow: bool = False) -> Any:
    """`value` with every (final) future replaced by its result and wrappers removed.

    Containers without futures are returned as the very same object.
    """
    cls = type(value)
    if cls in _ATOMIC:
        return value
    if isinstance(value, TaskFuture):
        return upstream_value(value, allow)
    if cls is quote:
        return value.data
    if cls is opaque:
        inner = value.value
        return upstream_value(inner, allow) if isinstance(inner, TaskFuture) else inner
    if cls is allow_failure:
        return resolve(value.value, True)
    if cls is unmapped:
        return resolve(value.value, allow)
    if isinstance(value, dict):
        changed = {k: resolve(v, allow) for k, v in value.items()}
        if all(changed[k] is v for k, v in value.items()):
            return value
        new = value.copy()
        new.update(changed)
        return new
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [resolve(v, allow) for v in value]
        if cls is not FutureList and all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return _rebuild_sequence(value, items)
    if _is_dataclass_instance(value):
        fields = {name: getattr(value, name) for name in _dataclass_field_names(value)}
        changed = {k: resolve(v, allow) for k, v in fields.items()}
        diff = {k: v for k, v in changed.items() if v is not fields[k]}
        if not diff:
            return value
        import copy  # lazy: only dataclass arguments holding futures get here

        new = copy.copy(value)
        for k, v in diff.items():
            object.__setattr__(new, k, v)  # also works for frozen dataclasses
        return new
    return value


def _rebuild_sequence(value: Any, items: list[Any]) -> Any:
    cls = type(value)
    if cls in (list, FutureList):
        return items
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return cls(*items)
    try:
        return cls(items)
    except TypeError:
        return type(value).__mro__[-2](items)  # the builtin base (list, tuple, set...)


# ---- .map() ----------------------------------------------------------------------------


def _mapped_future_value(task_name: str, name: str, fut: TaskFuture[Any]) -> Any:
    """A future passed to `.map()` is waited for and its result mapped: `.map()` must
    know how many runs to make before it returns."""
    try:
        block_until_final(fut)
    except WouldDeadlock:
        raise WouldDeadlock(
            f"task {task_name!r}: .map() needs the elements of {name!r} now, but it is the "
            f"future of task {fut.name!r}, which this event loop must run: in async code "
            f"write `.map(await future)`"
        ) from None
    if error_of(fut) is not None:
        outcome(fut, raise_on_failure=False)  # marks it observed: its error is reported here
        raise upstream_failed(fut, f"task {task_name!r} cannot be mapped over {name!r}: its ")
    return outcome(fut)


def expand_map(
    task_name: str, parameters: Mapping[str, Any], variadic: str | None = None
) -> list[dict[str, Any]]:
    """One parameter dict per run of `.map()`, in input order (Prefect's rules).

    `variadic` names the function's `**kwargs` parameter, if any: the values inside it
    are mapped or broadcast one by one, as if each were a parameter of its own (as
    Prefect explodes, maps and collapses them), and each run gets its own dict.
    """
    extra = parameters.get(variadic) if variadic is not None else None
    if variadic is None or not isinstance(extra, dict) or not extra:
        return _expand(task_name, parameters)
    flat = {k: v for k, v in parameters.items() if k != variadic}
    flat.update(extra)  # no clash: bind() put into **kwargs only names nothing else has
    runs = _expand(task_name, flat)
    return [_collapse(run, variadic, extra) for run in runs]


def _collapse(run: dict[str, Any], variadic: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    collapsed = {k: v for k, v in run.items() if k not in extra}
    collapsed[variadic] = {k: run[k] for k in extra}
    return collapsed


def _expand(task_name: str, parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
    mapped: dict[str, list[Any]] = {}
    static: dict[str, Any] = {}
    for name, value in parameters.items():
        if isinstance(value, TaskFuture):
            value = _mapped_future_value(task_name, name, value)
        if isinstance(value, unmapped):
            static[name] = value.value
        elif isinstance(value, (quote, allow_failure)):  # each element keeps the wrapper
            inner = value.data if isinstance(value, quote) else value.value
            if _is_mappable(inner):
                mapped[name] = [type(value)(v) for v in inner]
            else:
                static[name] = value
        elif _is_mappable(value):
            mapped[name] = list(value)
        else:
            static[name] = value
    if not mapped:
        raise MappingMissingIterable(
            f"task {task_name!r}: .map() needs at least one iterable argument to map over, "
            f"got only static values {_describe(static)}; use .submit() for a single run"
        )
    lengths = {name: len(values) for name, values in mapped.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}={n}" for k, n in lengths.items())
        raise MappingLengthMismatch(
            f"task {task_name!r}: .map() got iterables of different lengths ({shown}); "
            "wrap arguments to broadcast in unmapped(...)"
        )
    count = next(iter(lengths.values()))
    return [{**static, **{k: v[i] for k, v in mapped.items()}} for i in range(count)]


def _is_mappable(value: Any) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes, bytearray))


def _describe(values: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}={v!r}"[:60] for k, v in values.items()) + "}"
