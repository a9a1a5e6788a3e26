"""An optional mypy plugin: a task accepts a future of `T` wherever it expects `T`.

asyncflow resolves a future passed as an argument before the task runs (and
`allow_failure(...)`, `opaque(...)` and `quote(...)` are unwrapped), so
`double.submit(a)` with `a: TaskFuture[int]` is the documented way to chain tasks. A
`ParamSpec` cannot say "T or a future of T" (PEP 612), so plain mypy rejects the call.
Enable the plugin in your mypy configuration:

```toml
[tool.mypy]
plugins = ["asyncflow.mypy"]
```

It rewrites the signature mypy checks for a call of a task (`t(...)`), of `.submit()`
and `.map()`, and of a flow (`f(...)`, whose future arguments are resolved too), from
the decorated function's parameters: where the function takes `T`, the call takes

- `.submit()`, a direct call, a flow: `T`, `TaskFuture[T]`,
  `allow_failure(TaskFuture[T])`, `opaque(T)` or `opaque(TaskFuture[T])`, `quote(T)`;
- `.map()`: an iterable of any of those (mapped), `TaskFuture[Iterable[T]]` or
  `quote(Iterable[T])` (mapped), `unmapped(T)` or `unmapped(TaskFuture[T])`,
  `allow_failure(...)` and `opaque(...)` as above (broadcast), and `T` or `quote(T)`
  themselves unless `T` is an iterable other than `str`/`bytes` (which would be mapped).
  `wait_for=` and `max_concurrency=` are checked too.

Everything else is checked as before: a wrong type, a future of the wrong type, a
missing or unknown argument are still errors. The overloads' return types are kept.
`wait_for=` calls get the function's parameters checked too (without the plugin they
take `Any`). The plugin is imported by mypy only: `import asyncflow` does not import it,
and asyncflow does not depend on mypy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mypy.checker import TypeChecker
from mypy.maptype import map_instance_to_supertype
from mypy.nodes import ARG_NAMED, ARG_NAMED_OPT, ARG_STAR2, TypeInfo
from mypy.plugin import CheckerPluginInterface, MethodSigContext, Plugin
from mypy.subtypes import is_subtype
from mypy.types import (
    AnyType,
    FunctionLike,
    Instance,
    NoneType,
    Parameters,
    Type,
    TypeOfAny,
    UnionType,
    UnpackType,
    get_proper_type,
)

__all__ = ("plugin",)

_TASK = "asyncflow._tasks.Task"
_FLOW = "asyncflow._flows.Flow"
_FUTURE = "asyncflow._core._future.TaskFuture"
_WRAPPER = "asyncflow._arguments.{}"
# The methods whose arguments asyncflow resolves (future -> value) before the call;
# `.map()` also maps over iterables, so its parameters take more (`_Types.mapped`).
_RESOLVING = {f"{_TASK}.submit", f"{_TASK}.__call__", f"{_FLOW}.__call__"}
_MAPPING = f"{_TASK}.map"


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point (`plugins = ["asyncflow.mypy"]`): the plugin class."""
    return _AsyncflowPlugin


class _AsyncflowPlugin(Plugin):
    """Widens the parameters of task and flow calls to what asyncflow resolves."""

    def get_method_signature_hook(
        self, fullname: str
    ) -> Callable[[MethodSigContext], FunctionLike] | None:
        """The hook for the calls whose arguments asyncflow resolves, else None."""
        if fullname in _RESOLVING:
            return _resolving_signature
        if fullname == _MAPPING:
            return _mapping_signature
        return None


class _Types:
    """Builds the accepted types of one call's parameters (mypy's named types)."""

    def __init__(self, api: CheckerPluginInterface) -> None:
        assert isinstance(api, TypeChecker)  # the one implementation: it has `modules`
        self.api = api

    def generic(self, fullname: str, arg: Type) -> Instance:
        """`fullname[arg]`, found by its defining module (the checker's own lookup
        walks attributes, and `asyncflow` has no attribute `_core`)."""
        module, _, name = fullname.rpartition(".")
        info = self.api.modules[module].names[name].node
        assert isinstance(info, TypeInfo), fullname
        return Instance(info, [arg])

    def future(self, arg: Type) -> Instance:
        return self.generic(_FUTURE, arg)

    def wrapper(self, name: str, arg: Type) -> Instance:
        return self.generic(_WRAPPER.format(name), arg)

    def iterable(self, arg: Type) -> Instance:
        return self.api.named_generic_type("typing.Iterable", [arg])

    def resolved(self, t: Type) -> list[Type]:
        """What `.submit()` and direct calls accept where the function takes `t`."""
        return [
            t,
            self.future(t),
            self.wrapper("quote", t),
            *self.wrapped_upstreams(t),
        ]

    def wrapped_upstreams(self, t: Type) -> list[Type]:
        """`allow_failure(TaskFuture[t])`, and `opaque(...)` of `t` or of a future of `t`."""
        future = self.future(t)
        return [
            self.wrapper("allow_failure", future),
            self.wrapper("opaque", t),
            self.wrapper("opaque", future),
        ]

    def mapped(self, t: Type) -> list[Type]:
        """What `.map()` accepts where the function takes `t`: mapped iterables and
        broadcast values (a plain iterable would be mapped, so only if `t` is none)."""
        accepted: list[Type] = [
            self.iterable(UnionType.make_union(self.resolved(t))),
            self.future(self.iterable(t)),
            self.wrapper("quote", self.iterable(t)),
            self.wrapper("unmapped", t),
            self.wrapper("unmapped", self.future(t)),
            *self.wrapped_upstreams(t),
        ]
        if self.broadcast_as_is(t):
            accepted += [t, self.wrapper("quote", t)]
        return accepted

    def broadcast_as_is(self, t: Type) -> bool:
        """`.map()` broadcasts a value of type `t` unwrapped: `str`, `bytes` or no
        iterable at all."""
        anything = AnyType(TypeOfAny.special_form)
        text = UnionType.make_union(
            [self.api.named_type("builtins.str"), self.api.named_type("builtins.bytes")]
        )
        return is_subtype(t, text) or not is_subtype(t, self.iterable(anything))


def _resolving_signature(ctx: MethodSigContext) -> FunctionLike:
    return _widened(ctx, _Types(ctx.api).resolved, extras=())


def _mapping_signature(ctx: MethodSigContext) -> FunctionLike:
    types = _Types(ctx.api)
    anything = AnyType(TypeOfAny.special_form)
    wait_for = UnionType.make_union([types.iterable(anything), types.future(anything), NoneType()])
    limit = UnionType.make_union([types.api.named_type("builtins.int"), NoneType()])
    return _widened(ctx, types.mapped, extras=(("wait_for", wait_for), ("max_concurrency", limit)))


def _parameters(ctx: MethodSigContext) -> Parameters | None:
    """The decorated function's parameters (`P` of `Task[P, R]` / `Flow[P, R]`), or
    None where they are not known (`Task[..., R]`, or inside asyncflow itself)."""
    instance = ctx.type
    if not isinstance(instance, Instance):
        return None
    base = next((i for i in instance.type.mro if i.fullname in (_TASK, _FLOW)), None)
    if base is None:
        return None
    params = get_proper_type(map_instance_to_supertype(instance, base).args[0])
    if not isinstance(params, Parameters) or params.is_ellipsis_args:
        return None
    return params


def _widened(
    ctx: MethodSigContext,
    accepted: Callable[[Type], list[Type]],
    extras: Sequence[tuple[str, Type]],
) -> FunctionLike:
    """The call's signature from the function's parameters, each widened to the union
    of `accepted(type)`; the signature's own keyword-only arguments that the function
    does not have (`wait_for=`, `return_state=`) and `extras` are kept, and so is the
    return type."""
    signature = ctx.default_signature
    params = _parameters(ctx)
    if params is None:
        return signature
    names = set(params.arg_names)
    types = [_accept(t, accepted) for t in params.arg_types]
    kinds = list(params.arg_kinds)
    arg_names = list(params.arg_names)
    keywords = [
        (name, t, kind)
        for name, t, kind in zip(
            signature.arg_names, signature.arg_types, signature.arg_kinds, strict=True
        )
        if kind in (ARG_NAMED, ARG_NAMED_OPT) and name is not None and name not in names
    ]
    keywords += [(name, t, ARG_NAMED_OPT) for name, t in extras if name not in names]
    at = kinds.index(ARG_STAR2) if ARG_STAR2 in kinds else len(kinds)  # before `**kwargs`
    for name, t, kind in reversed(keywords):
        types.insert(at, t)
        kinds.insert(at, kind)
        arg_names.insert(at, name)
    return signature.copy_modified(arg_types=types, arg_kinds=kinds, arg_names=arg_names)


def _accept(t: Type, accepted: Callable[[Type], list[Type]]) -> Type:
    """The union of what is accepted for a parameter of type `t` (`Any` stays `Any`,
    and an unpacked `*args: *Ts` is left as it is)."""
    if isinstance(t, UnpackType) or isinstance(get_proper_type(t), AnyType):
        return t
    return UnionType.make_union(accepted(t))
