"""Flow parameter validation: arguments checked and coerced against the annotations.

As in Prefect, a flow checks the arguments of each call against its function's type
annotations before the body runs, with pydantic, converting what pydantic converts
(`"3"` for `x: int` becomes `3`, a dict for a `BaseModel` parameter becomes the model);
an argument that does not fit raises `ParameterTypeError` naming the flow, the
parameter, the value and the expected type. `@flow(validate_parameters=False)` turns
it off. Tasks are not validated (neither are they in Prefect).

The design:

- pydantic is an optional extra (`asyncflow[pydantic]`). Nothing here imports it at
  module level: it is imported when a validating flow whose annotations need checking
  is first called, so `import asyncflow` does not pay for it, and neither do flows
  whose parameters are unannotated or `Any`.
- One `FlowParameters` per flow, built lazily on the first call and kept: a pydantic
  `TypeAdapter` per annotated parameter (`*args: T` checks each element, `**kwargs: T`
  each value), with arbitrary classes allowed (checked with `isinstance`, as Prefect's
  `arbitrary_types_allowed`). Per parameter, not one model for the whole signature,
  so parameter names never clash with a model's attributes (`json`, `copy`,
  `model_...`). Two threads making the first call at once may both build it: the
  results are the same and one is kept.
- Arguments left to their defaults are not validated (pydantic's and Prefect's
  default). The receiver of a method (a first parameter named `self` or `cls`) is not
  validated either.
- A value that needs no conversion reaches the body as the very object passed:
  pydantic returns a copy of every list or dict it checks, so a converted value is
  used only when it differs from the given one in a type or a value somewhere inside
  (Prefect always passes pydantic's copy).
- String annotations (`from __future__ import annotations`) are resolved in the
  function's module and, for a flow defined inside a function, in that function's
  local names as they were when the decorator ran (a class defined in a test, say):
  a snapshot taken then, at decoration, since they are gone by the first call.
- An annotation that cannot be resolved (a name imported only under
  `TYPE_CHECKING`) or that pydantic cannot check (a protocol that is not
  `runtime_checkable`) leaves that parameter unchecked, with one warning per flow:
  a flow that ran before keeps running.
- Without pydantic installed, flows run unvalidated. A shallow check (`isinstance`
  against the annotation's class) still looks at each argument, and the first that
  does not fit warns once per flow that it was passed unconverted and how to turn
  validation on (or off, to silence it).
"""

from __future__ import annotations

import functools
import inspect
import operator
import types
import typing
import warnings
from collections.abc import Callable
from typing import Any

from ._core import AsyncflowError

__all__ = ("FlowParameters", "ParameterTypeError")

_INSTALL = "`pip install 'asyncflow[pydantic]'`"
_TURN_OFF = "`@flow(validate_parameters=False)`"
# Types whose equal values of the same type are interchangeable (immutable atoms).
_ATOMS: frozenset[type] = frozenset({int, float, complex, str, bytes, bool, type(None)})
_SHOWN = 80  # characters of a value's repr in an error message


class ParameterTypeError(AsyncflowError, TypeError):
    """A flow was called with arguments that do not fit its type annotations.

    Raised before the flow's body runs; the message names the flow and, for each
    invalid argument, the parameter, the value and the expected type. Pass
    `@flow(validate_parameters=False)` to call the flow without the check.
    """


class _Check:
    """One parameter's check: its name, the annotation shown in errors, the pydantic
    adapter (None without pydantic: a shallow check only) and the annotation."""

    __slots__ = ("adapter", "annotation", "expected", "kind", "name", "positional")

    def __init__(self, name: str, kind: Any, annotation: Any, adapter: Any) -> None:
        self.name = name
        self.kind = kind
        self.positional = kind is inspect.Parameter.VAR_POSITIONAL  # `*args`: a tuple
        self.annotation = annotation
        self.expected = _type_name(annotation)
        self.adapter = adapter


class FlowParameters:
    """The parameter checks of one flow, built on first use and kept."""

    __slots__ = ("_checks", "_fn", "_label", "_local_names", "_warned")

    def __init__(self, fn: Callable[..., Any], label: str) -> None:
        self._fn = fn
        self._label = label  # "flow 'name'", for messages
        self._checks: tuple[_Check, ...] | None = None
        self._warned = False
        self._local_names = _defining_locals(fn)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # The adapters stay behind (they are rebuilt on first use where this lands).
        return (FlowParameters, (self._fn, self._label))

    # ---- checking --------------------------------------------------------------------
    def apply(self, arguments: dict[str, Any]) -> bool:
        """Check the bound, resolved `arguments` and replace converted values in place;
        True if any was replaced.

        Raises:
            ParameterTypeError: an argument does not fit its annotation.
        """
        checks = self._checks
        if checks is None:
            checks = self._checks = self._build()
        if not checks:
            return False
        if checks[0].adapter is None:
            self._shallow(checks, arguments)
            return False
        return self._validate(checks, arguments)

    def validated(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """A copy of `parameters` with converted values (`Flow.validate_parameters`).

        Raises:
            ParameterTypeError: a parameter does not fit its annotation.
            ImportError: a parameter needs checking and pydantic is not installed.
        """
        out = dict(parameters)
        checks = self._checks
        if checks is None:
            checks = self._checks = self._build()
        if not checks:
            return out
        if checks[0].adapter is None:
            raise ImportError(
                f"{self._label}: validating parameters needs pydantic: {_INSTALL}"
            ) from None
        self._validate(checks, out)
        return out

    def _validate(self, checks: tuple[_Check, ...], arguments: dict[str, Any]) -> bool:
        problems: list[str] = []
        changed = False
        for check in checks:
            if check.name not in arguments:
                continue  # left to its default
            value = arguments[check.name]
            try:
                converted = check.adapter.validate_python(value)
            except _validation_error() as exc:
                problems.extend(_describe(check, exc))
                continue
            if check.positional:
                converted = tuple(converted)
            if converted is not value and not unchanged(value, converted):
                arguments[check.name] = converted
                changed = True
        if problems:
            raise ParameterTypeError(
                f"{self._label} got invalid arguments (checked against its type "
                f"annotations before it ran; {_TURN_OFF} turns the check off):\n"
                + "\n".join(problems)
            )
        return changed

    def _shallow(self, checks: tuple[_Check, ...], arguments: dict[str, Any]) -> None:
        if self._warned:
            return
        for check in checks:
            if check.name not in arguments:
                continue
            for value in _values(check, arguments[check.name]):
                if not _fits(value, check.annotation):
                    self._warned = True
                    warnings.warn(
                        f"{self._label}: parameter {check.name!r} got {_shown(value)}, "
                        f"not {check.expected}, and it is passed as it is: checking and "
                        f"converting flow parameters needs pydantic ({_INSTALL}); "
                        f"{_TURN_OFF} silences this",
                        UserWarning,
                        stacklevel=5,
                    )
                    return

    # ---- building ----------------------------------------------------------------------
    def _build(self) -> tuple[_Check, ...]:
        wanted = _annotated_parameters(self._fn, self._local_names, self._warn)
        if not wanted:
            return ()
        try:
            import pydantic  # noqa: F401  (the optional extra: is it installed?)
        except ImportError:
            return tuple(_Check(name, kind, ann, None) for name, kind, ann in wanted)
        checks = []
        for name, kind, annotation in wanted:
            adapter = _adapter(_checked_type(kind, annotation), name, self._warn)
            if adapter is not None:
                checks.append(_Check(name, kind, annotation, adapter))
        return tuple(checks)

    def _warn(self, message: str) -> None:
        warnings.warn(
            f"{self._label}: {message}; {_TURN_OFF} silences this",
            UserWarning,
            stacklevel=6,
        )


def _defining_locals(fn: Callable[..., Any]) -> dict[str, Any] | None:
    """For a function defined inside a function, with string annotations: the local
    names of the frame that decorates it (the first one outside asyncflow)."""
    if "<locals>" not in getattr(fn, "__qualname__", ""):
        return None
    annotations = getattr(fn, "__annotations__", None) or {}
    if not any(isinstance(a, str) for a in annotations.values()):
        return None
    frame = inspect.currentframe()
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith("asyncflow"):
        frame = frame.f_back
    return dict(frame.f_locals) if frame is not None else None


@functools.cache
def _validation_error() -> type[Exception]:
    """pydantic's `ValidationError` (imported once: only validating flows get here)."""
    from pydantic import ValidationError

    return ValidationError


def _annotated_parameters(
    fn: Callable[..., Any], local_names: dict[str, Any] | None, warn: Callable[[str], None]
) -> list[tuple[str, Any, Any]]:
    """`(name, kind, annotation)` of each parameter to check: annotated, not `Any` or
    `object`, not a method's receiver, with its annotation resolved."""
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    params = [p for p in params if p.annotation is not inspect.Parameter.empty]
    if not params:
        return []
    hints = _resolved_hints(fn, params, local_names, warn)
    out = []
    for p in params:
        annotation = hints.get(p.name, Any)
        if annotation is Any or annotation is object:
            continue
        out.append((p.name, p.kind, annotation))
    return out


def _resolved_hints(
    fn: Callable[..., Any],
    params: list[inspect.Parameter],
    local_names: dict[str, Any] | None,
    warn: Callable[[str], None],
) -> dict[str, Any]:
    """The parameters' annotations with string ones evaluated (`from __future__ import
    annotations`); one that cannot be is left out, with a warning."""
    try:
        return typing.get_type_hints(fn, localns=local_names, include_extras=True)
    except Exception:  # any failure (a NameError, say): resolve them one by one below
        pass
    namespace = {**getattr(inspect.unwrap(fn), "__globals__", {}), **(local_names or {})}
    hints = {}
    for p in params:
        annotation = p.annotation
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace)  # what get_type_hints does
            except Exception as exc:  # a name not defined at run time, say
                warn(
                    f"the annotation {p.annotation!r} of parameter {p.name!r} cannot be "
                    f"resolved ({type(exc).__name__}: {exc}), so the parameter is not checked"
                )
                continue
        hints[p.name] = annotation
    return hints


def _checked_type(kind: Any, annotation: Any) -> Any:
    if kind is inspect.Parameter.VAR_POSITIONAL:
        return tuple[annotation, ...]
    if kind is inspect.Parameter.VAR_KEYWORD:
        return dict[str, annotation]
    return annotation


def _adapter(target: Any, name: str, warn: Callable[[str], None]) -> Any:
    """A pydantic `TypeAdapter` for `target`, arbitrary classes allowed; None (with a
    warning) if pydantic cannot check it."""
    from pydantic import ConfigDict, PydanticUserError, TypeAdapter

    try:
        try:
            return TypeAdapter(target, config=ConfigDict(arbitrary_types_allowed=True))
        except PydanticUserError as exc:
            if exc.code != "type-adapter-config-unused":
                raise
            return TypeAdapter(target)  # a model or dataclass: it has its own config
    except Exception as exc:  # any schema error: the parameter is not checked
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        warn(
            f"parameter {name!r} is not checked: pydantic cannot validate "
            f"{_type_name(target)} ({type(exc).__name__}: {first})"
        )
        return None


# ---- messages ----------------------------------------------------------------------


def _describe(check: _Check, exc: Any) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False):
        where = check.name + "".join(f"[{part!r}]" for part in error["loc"])
        lines.append(
            f"  - parameter {where}: got {_shown(error['input'])}, expected "
            f"{check.expected}: {error['msg']}"
        )
    return lines


def _shown(value: Any) -> str:
    text = repr(value)
    if len(text) > _SHOWN:
        text = text[: _SHOWN - 3] + "..."
    return f"{text} ({type(value).__name__})"


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "")


# ---- a converted value, or the given one -----------------------------------------------


def unchanged(given: Any, converted: Any) -> bool:
    """True if pydantic's `converted` holds the same types and values as `given` all
    the way down (then `given` itself is passed on)."""
    if converted is given:
        return True
    cls = type(given)
    if type(converted) is not cls:
        return False
    if cls in _ATOMS:
        return bool(given == converted)
    if cls in (list, tuple):
        if len(given) != len(converted):
            return False
        if all(map(operator.is_, given, converted)):  # the common case, at C speed
            return True
        return all(map(unchanged, given, converted))
    if cls is dict:
        return list(given) == list(converted) and all(
            unchanged(given[key], converted[key]) for key in given
        )
    if cls in (set, frozenset):
        return bool(given == converted) and {type(v) for v in given} == {type(v) for v in converted}
    return False


# ---- without pydantic: a shallow check, to warn ------------------------------------------


def _values(check: _Check, value: Any) -> Any:
    if check.kind is inspect.Parameter.VAR_POSITIONAL:
        return value
    if check.kind is inspect.Parameter.VAR_KEYWORD:
        return value.values()
    return (value,)


def _fits(value: Any, annotation: Any) -> bool:
    """Whether `value` plainly fits `annotation` (its outer class only); True where
    that cannot be told cheaply."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _fits(value, typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return any(_fits(value, arg) for arg in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation is None or annotation is type(None):
        return value is None
    cls = origin if origin is not None else annotation
    if not isinstance(cls, type):
        return True
    try:
        return isinstance(value, cls)
    except TypeError:  # a protocol that is not runtime_checkable, say
        return True
