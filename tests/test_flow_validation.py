"""Flow parameter validation (as Prefect's): arguments are checked against the type
annotations with pydantic and converted before the body runs, `validate_parameters=False`
turns it off, an invalid argument is a `ParameterTypeError` naming the flow, the
parameter, the value and the type; pydantic is imported only when needed, and without
it flows run unvalidated with a warning."""

from __future__ import annotations

import asyncio
import json
import pickle
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pydantic  # the test extra installs it: CI has it, never skips
import pytest
from helpers import WAIT

from asyncflow import flow, task
from asyncflow.exceptions import ParameterTypeError, UpstreamFailed

if TYPE_CHECKING:
    from decimal import Decimal  # only for type checkers: unresolvable at run time


class Point(pydantic.BaseModel):
    x: int
    y: int = 0


@dataclass
class Box:
    size: int


class Opaque:
    """An arbitrary class: checked with isinstance (Prefect's arbitrary_types_allowed)."""


# ---- conversion ------------------------------------------------------------------------


def test_values_are_converted_before_the_body_runs() -> None:
    seen: list[Any] = []

    @flow
    def f(n: int, ratio: float, point: Point, tags: list[str], when: int | None = None) -> None:
        seen.extend([n, ratio, point, tags, when])

    f("3", 1, {"x": "4"}, ("a", "b"))
    n, ratio, point, tags, when = seen
    assert (n, type(n)) == (3, int)
    assert (ratio, type(ratio)) == (1.0, float)
    assert point == Point(x=4, y=0)
    assert tags == ["a", "b"]
    assert type(tags) is list
    assert when is None  # a default is not validated, nor passed differently


@pytest.mark.asyncio
async def test_an_async_flow_converts_too() -> None:
    @flow
    async def f(n: int, box: Box) -> tuple[int, Box]:
        await asyncio.sleep(0)
        return n, box

    n, box = await f("5", {"size": "2"})
    assert n == 5
    assert box == Box(2)


def test_unannotated_any_and_variadic_parameters() -> None:
    @flow
    def f(a, b: Any, *args: int, c: object = None, **kwargs: float) -> tuple[Any, ...]:
        return a, b, args, c, kwargs

    a, b, args, c, kwargs = f("a", "b", "1", 2, c="c", z="2.5")
    assert (a, b, c) == ("a", "b", "c")
    assert args == (1, 2)
    assert type(args) is tuple
    assert kwargs == {"z": 2.5}
    with pytest.raises(ParameterTypeError, match=r"args\[1\]: got 'x' \(str\), expected int"):
        f(1, 2, 3, "x")


def test_values_that_need_no_conversion_are_the_very_objects_passed() -> None:
    @flow
    def f(xs: list[int], d: dict[str, list[int]], obj: Opaque, p: Point) -> tuple[Any, ...]:
        return xs, d, obj, p

    xs, d, obj, p = [1, 2], {"a": [3]}, Opaque(), Point(x=1)
    got = f(xs, d, obj, p)
    assert all(a is b for a, b in zip(got, (xs, d, obj, p), strict=True))
    converted = f([1, "2"], {"a": [True]}, obj, p)
    assert converted[0] == [1, 2]
    assert converted[1] == {"a": [1]}
    assert type(converted[1]["a"][0]) is int


def test_nested_flows_validate_the_values_of_futures() -> None:
    @task
    def text() -> str:
        return "7"

    @task
    def fail() -> int:
        raise ValueError("no")

    @flow
    def child(n: int) -> int:
        return n + 1

    @flow
    def parent() -> int:
        return child(text.submit())

    assert parent() == 8
    with pytest.raises(UpstreamFailed):  # a failed future: not validated, the usual error
        child(fail.submit())


# ---- errors ------------------------------------------------------------------------------


def test_an_invalid_argument_names_flow_parameter_value_and_type_before_the_body() -> None:
    ran: list[int] = []

    @flow(name="etl")
    def f(count: int, point: Point) -> None:
        ran.append(count)

    with pytest.raises(ParameterTypeError) as info:
        f("many", {"x": "nope"})
    message = str(info.value)
    assert ran == []
    assert "flow 'etl'" in message
    assert "parameter count: got 'many' (str), expected int" in message
    assert "parameter point['x']: got 'nope' (str), expected Point" in message
    assert "validate_parameters=False" in message
    assert isinstance(info.value, TypeError)  # as Prefect's, and a TypeError for callers


@pytest.mark.asyncio
async def test_an_async_flow_raises_before_the_body_runs() -> None:
    ran: list[int] = []

    @flow
    async def f(n: Literal[1, 2]) -> None:
        ran.append(n)

    with pytest.raises(ParameterTypeError, match=r"parameter n: got 3 \(int\)"):
        await f(3)
    assert ran == []


def test_a_long_value_is_shortened_in_the_message() -> None:
    @flow
    def f(n: int) -> None: ...

    with pytest.raises(ParameterTypeError) as info:
        f("x" * 500)
    assert "..." in str(info.value)
    assert len(str(info.value)) < 600


def test_the_error_pickles_by_its_public_path() -> None:
    error = ParameterTypeError("flow 'f' got invalid arguments")
    data = pickle.dumps(error)
    assert b"asyncflow.exceptions" in data
    assert str(pickle.loads(data)) == str(error)


# ---- turning it off, with_options, the method ----------------------------------------------


def test_validate_parameters_false_passes_values_as_they_are() -> None:
    @flow(validate_parameters=False)
    def f(n: int) -> Any:
        return n

    assert f("3") == "3"
    assert f.should_validate_parameters is False
    strict = f.with_options(validate_parameters=True)
    assert strict("3") == 3
    assert strict.with_options(name="again")("4") == 4  # kept
    with pytest.raises(TypeError, match="validate_parameters must be a bool"):
        flow(validate_parameters="yes")


def test_the_validate_parameters_method_as_prefect() -> None:
    @flow(validate_parameters=False)  # the method checks regardless, as Prefect's
    def f(n: int, point: Point, other: str = "x") -> None: ...

    params = {"n": "1", "point": {"x": 2}}
    assert f.validate_parameters(params) == {"n": 1, "point": Point(x=2)}
    assert params == {"n": "1", "point": {"x": 2}}  # not changed in place
    with pytest.raises(ParameterTypeError, match="parameter n"):
        f.validate_parameters({"n": "x"})


def test_tasks_are_not_validated() -> None:
    @task
    def t(n: int) -> Any:
        return n

    assert t("3") == "3"


# ---- annotations pydantic cannot use ------------------------------------------------------


def test_an_unresolvable_annotation_leaves_that_parameter_unchecked_with_a_warning() -> None:
    @flow
    def f(amount: Decimal, n: int) -> tuple[Any, int]:
        return amount, n

    with pytest.warns(UserWarning, match=r"'Decimal' of parameter 'amount' cannot be resolved"):
        assert f("1.5", "2") == ("1.5", 2)
    assert f("x", "3") == ("x", 3)  # warned once: built once


def test_a_class_local_to_the_defining_function_resolves() -> None:
    class Local(pydantic.BaseModel):
        name: str

    @flow
    def f(item: Local, items: list[Local]) -> tuple[Local, list[Local]]:
        return item, items

    assert f({"name": "a"}, [{"name": "b"}]) == (Local(name="a"), [Local(name="b")])


def test_a_protocol_annotation_is_left_unchecked_with_a_warning() -> None:
    class Readable(Protocol):
        def read(self) -> bytes: ...

    @flow
    def f(source: Readable) -> Any:
        return source

    with pytest.warns(UserWarning, match="parameter 'source' is not checked"):
        assert f(3) == 3


def test_the_validator_is_built_once_per_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncflow._validation as validation

    built: list[Any] = []
    real = validation._adapter
    monkeypatch.setattr(validation, "_adapter", lambda *a: built.append(a[1]) or real(*a))

    @flow
    def f(n: int, m: int) -> int:
        return n + m

    assert built == []  # lazily: nothing at decoration
    assert [f(1, 2), f("3", 4)] == [3, 7]
    assert built == ["n", "m"]


# ---- pydantic stays optional ---------------------------------------------------------------


def run_python(code: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_pydantic_is_imported_only_when_a_flow_needs_it() -> None:
    got = run_python(
        """
        import json, sys
        import asyncflow
        from asyncflow import flow
        steps = ["pydantic" in sys.modules]

        @flow
        def plain(a, b: object, c=1): return a

        @flow(validate_parameters=False)
        def off(n: int): return n

        @flow
        def typed(n: int): return n

        plain(1, 2); off("1")
        steps.append("pydantic" in sys.modules)
        steps.append(typed("2"))
        steps.append("pydantic" in sys.modules)
        print(json.dumps(steps))
        """
    )
    assert got == [False, False, 2, True]


def test_without_pydantic_flows_run_unvalidated_with_one_warning() -> None:
    got = run_python(
        """
        import json, sys, warnings
        sys.modules["pydantic"] = None  # as if not installed: importing it fails
        from asyncflow import flow

        @flow
        def f(n: int, *rest: str):
            return n

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = [f(1, "a"), f("2"), f("3"), f(4, 5)]
        try:
            f.validate_parameters({"n": "1"})
            error = None
        except ImportError as exc:
            error = str(exc)
        print(json.dumps([results, [str(w.message) for w in caught], error]))
        """
    )
    results, warned, error = got
    assert results == [1, "2", "3", 4]
    assert len(warned) == 1  # once per flow
    assert "parameter 'n' got '2' (str), not int" in warned[0]
    assert "pip install 'asyncflow[pydantic]'" in warned[0]
    assert "validate_parameters=False" in warned[0]
    assert "needs pydantic" in error


def test_importing_asyncflow_does_not_import_pydantic() -> None:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import asyncflow"],
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
        check=True,
    )
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert "asyncflow._validation" in imported  # the table was read
    assert not {name for name in imported if name.split(".")[0] in ("pydantic", "pydantic_core")}


# ---- the pieces, in process ------------------------------------------------------------


def test_without_pydantic_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pydantic", None)  # importing it now fails

    @flow
    def f(n: int | None, tag: Literal["a", "b"], *rest: float, **extra: str) -> Any:
        return n, tag, rest, extra

    @flow
    def unannotated(a) -> Any:  # nothing to check: no warning, no pydantic needed
        return a

    assert f(None, "a", 1.0, k="v") == (None, "a", (1.0,), {"k": "v"})
    assert unannotated.validate_parameters({"a": "x"}) == {"a": "x"}
    with pytest.warns(UserWarning, match=r"parameter 'extra' got 3 \(int\), not str"):
        assert f(1, "b", 2.0, k=3) == (1, "b", (2.0,), {"k": 3})
    assert f("x", "c") == ("x", "c", (), {})  # warned once per flow: silent now
    with pytest.raises(ImportError, match="asyncflow\\[pydantic\\]"):
        f.validate_parameters({"n": 1})


def test_the_shallow_check() -> None:
    from typing import Annotated

    from asyncflow._validation import _fits

    class Proto(Protocol):
        def go(self) -> None: ...

    assert _fits(1, int)
    assert not _fits("1", int)
    assert _fits([1], list[str])  # the outer class only
    assert not _fits((1,), list[int])
    assert _fits(None, int | None)
    assert not _fits(1.5, int | None)
    assert _fits(None, None)
    assert not _fits(0, None)
    assert _fits("a", Literal["a"])
    assert not _fits("z", Literal["a"])
    assert _fits(2, Annotated[int, "meta"])
    assert _fits(object(), Proto)  # cannot tell: passes
    assert _fits(3, "int")  # an unresolved string: cannot tell


def test_what_counts_as_unchanged() -> None:
    from asyncflow._validation import unchanged

    assert unchanged([1, [2, 3]], [1, [2, 3]])
    assert not unchanged([1, [2, 3]], [1, [2.0, 3]])
    assert not unchanged((1,), (1, 2))
    assert unchanged({"a": (1,)}, {"a": (1,)})
    assert not unchanged({"a": 1}, {"b": 1})
    assert unchanged({1, 2}, {1, 2})
    assert not unchanged({1}, {1.0})
    assert not unchanged(1, 1.0)
    assert not unchanged(Box(1), Box(1))  # another object of a class: the converted one


def test_a_flow_pickles_without_its_built_checks() -> None:
    import cloudpickle

    @flow
    def f(n: int) -> int:
        return n

    assert f("1") == 1
    copy = cloudpickle.loads(cloudpickle.dumps(f))
    assert copy("2") == 2  # rebuilt where it landed
    with pytest.raises(ParameterTypeError):
        copy("x")
