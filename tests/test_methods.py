"""Tasks and flows on instance methods, class methods and static methods: the instance
(or the class) is passed as the first argument to direct calls, `.submit()`, `.map()`
and `.map_iter()`, in sync and async code and in a process pool; the bound task keeps
the function's name; runners only ever see the original task."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest
from helpers import WAIT

from asyncflow import Flow, Task, TaskFuture, flow, task
from asyncflow.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner


class Scaler:
    """Module level, so a process pool finds its tasks by name."""

    factor = 100

    def __init__(self, k: int) -> None:
        self.k = k

    @task
    def scale(self, x: int) -> int:
        return self.k * x

    @task
    async def ascale(self, x: int) -> int:
        await asyncio.sleep(0)
        return self.k * x

    @task
    def who(self) -> tuple[int, int]:
        import os

        return self.k, os.getpid()

    @task
    @classmethod
    def by_class(cls, x: int) -> tuple[str, int]:
        return cls.__name__, cls.factor * x

    @task
    @staticmethod
    def triple(x: int) -> int:
        return 3 * x

    @staticmethod
    @task
    def quadruple(x: int) -> int:
        return 4 * x

    @flow
    def run(self, xs: list[int]) -> list[int]:
        return self.scale.map(xs)

    @flow
    async def arun(self, x: int) -> int:
        return await self.ascale.submit(x)

    @flow
    @classmethod
    def class_flow(cls, x: int) -> tuple[str, int]:
        return cls.by_class(x)

    @flow
    @staticmethod
    def static_flow(x: int) -> int:
        return Scaler.triple.submit(x).result()


class Big(Scaler):
    factor = 1000


# ---- instance methods ------------------------------------------------------------------


def test_an_instance_method_task_gets_the_instance_as_self() -> None:
    s = Scaler(3)
    assert s.scale(2) == 6
    assert s.scale.submit(4).result(timeout=WAIT) == 12
    assert s.scale.map([1, 2, 3]).result(timeout=WAIT) == [3, 6, 9]
    assert list(s.scale.map_iter([1, 2], max_concurrency=1)) == [3, 6]
    assert s.scale(x=5) == 15  # keywords too


def test_the_binding_is_per_instance_not_global() -> None:
    a, b = Scaler(2), Scaler(5)
    bound_a = a.scale
    assert b.scale(1) == 5
    assert bound_a(1) == 2  # looking the task up on b did not rebind a's


@pytest.mark.asyncio
async def test_an_async_instance_method_task() -> None:
    s = Scaler(4)
    assert await s.ascale(2) == 8
    assert await s.ascale.submit(3) == 12
    assert await s.ascale.map([1, 2]) == [4, 8]
    assert [v async for v in s.ascale.map_iter([5])] == [20]


def test_looked_up_on_the_class_it_is_the_task_itself() -> None:
    s = Scaler(7)
    assert isinstance(Scaler.__dict__["scale"], Task)
    assert Scaler.scale is Scaler.__dict__["scale"]
    assert Scaler.scale(s, 2) == 14  # as a plain function: self passed explicitly
    assert Scaler.scale.submit(s, 3).result(timeout=WAIT) == 21


def test_the_bound_task_is_a_task_with_the_functions_name() -> None:
    bound = Scaler(1).scale
    assert isinstance(bound, Task)
    assert bound.name == "scale"
    assert bound.fn is Scaler.scale.fn
    assert bound.__name__ == "scale"
    assert "bound to <Scaler object>" in repr(bound)
    assert bound.with_options(name="renamed").name == "renamed"
    assert bound.with_options(retries=1).submit(2).result(timeout=WAIT) == 2  # still bound


def test_runners_and_hooks_see_the_original_task() -> None:
    seen: list[Any] = []
    original = Scaler.scale
    s = Scaler(2)
    with ThreadPoolTaskRunner(max_workers=2) as runner:
        fut = s.scale.submit(1)
        fut.result(timeout=WAIT)
        assert fut.name == "scale"
        hook = s.scale.on_completion(lambda t, state: seen.append(t))  # a shared list
        try:
            runner.submit(Scaler.scale, {"self": s, "x": 1}).result(timeout=WAIT)
            s.scale.submit(2).result(timeout=WAIT)
        finally:
            original.on_completion.remove(hook)
            original._build_run_options()
    assert seen == [original, original]


def test_the_receiver_is_passed_as_is_not_searched_or_mapped() -> None:
    @dataclass
    class Holder:
        items: list[Any] = field(default_factory=list)

        @task
        def show(self, x: int) -> tuple[Any, int]:
            return self, x

    class Bag(list[int]):  # iterable: must be broadcast, not mapped over
        @task
        def size(self, x: int) -> int:
            return len(self) + x

    inner = Scaler(1).scale.submit(1)
    holder = Holder([inner])  # a future inside self: not awaited, not replaced
    me, x = holder.show.submit(5).result(timeout=WAIT)
    assert me is holder
    assert me.items[0] is inner
    assert x == 5
    assert Bag([1, 2, 3]).size.map([10, 20]).result(timeout=WAIT) == [13, 23]
    assert Bag([1]).size.submit(Scaler(1).scale.submit(4)).result(timeout=WAIT) == 5


def test_a_bad_call_names_the_task() -> None:
    with pytest.raises(TypeError, match="task 'scale'"):
        Scaler(1).scale.submit(1, 2)


def test_task_workers_refuse_a_bound_task_at_the_call() -> None:
    with pytest.raises(TypeError, match=r"task 'scale' is bound to .*task workers"):
        Scaler(1).scale.delay(2)
    with pytest.raises(TypeError, match="task 'by_class' is bound to"):
        Scaler.by_class.apply_async((1,))


# ---- class methods and static methods --------------------------------------------------


def test_a_class_method_task_gets_the_class() -> None:
    assert Scaler.by_class(2) == ("Scaler", 200)
    assert Scaler(1).by_class(3) == ("Scaler", 300)  # via an instance: still the class
    assert Big.by_class(1) == ("Big", 1000)  # the class it is looked up on
    assert Big(1).by_class.submit(2).result(timeout=WAIT) == ("Big", 2000)
    assert Scaler.by_class.map([1, 2]).result(timeout=WAIT) == [("Scaler", 100), ("Scaler", 200)]
    assert Scaler.by_class.name == "by_class"
    assert Scaler.by_class.with_options(name="c").submit(1).result(timeout=WAIT) == (
        "Scaler",
        100,
    )
    copy = Scaler.__dict__["by_class"].with_options(retries=1)  # still a class method's task

    class Holder:
        factor = 5
        again = copy

    assert Holder.again(1) == ("Holder", 5)


def test_classmethod_outside_task_works_where_classmethod_chains() -> None:
    class Old:
        n = 2

        @classmethod
        @task
        def double(cls, x: int) -> int:
            return cls.n * x

    assert Old.double(3) == 6  # a direct call works on every version
    if sys.version_info >= (3, 13):
        # classmethod stopped passing lookups on to the descriptor it wraps: the
        # lookup is a plain method object over the task, whose `.submit` is the task's
        # own, without the class (documented: put @task outside).
        with pytest.raises(TypeError, match="task 'double': missing a required argument"):
            Old.double.submit(4)
        return
    assert Old.double.submit(4).result(timeout=WAIT) == 8
    assert Old().double.map([1]).result(timeout=WAIT) == [2]


def test_a_static_method_task_binds_nothing() -> None:
    s = Scaler(1)
    assert Scaler.triple(2) == 6
    assert s.triple(3) == 9
    assert s.triple.submit(4).result(timeout=WAIT) == 12
    assert s.triple.map([1, 2]).result(timeout=WAIT) == [3, 6]
    assert s.triple is Scaler.triple  # nothing to bind: the task itself
    assert s.quadruple.submit(2).result(timeout=WAIT) == 8  # `@staticmethod @task`
    assert Scaler.triple.with_options(name="t").submit(1).result(timeout=WAIT) == 3


# ---- flows -----------------------------------------------------------------------------


def test_flows_on_methods() -> None:
    s = Scaler(2)
    assert s.run([1, 2]) == [2, 4]
    assert Scaler.run(s, [3]) == [6]
    assert Scaler.class_flow(2) == ("Scaler", 200)
    assert Big(1).class_flow(1) == ("Big", 1000)
    assert s.static_flow(2) == 6
    assert isinstance(s.run, Flow)
    assert s.run.name == "run"
    assert "bound to <Scaler object>" in repr(s.run)
    assert s.run.with_options(name="again")([5]) == [10]


@pytest.mark.asyncio
async def test_an_async_flow_on_a_method() -> None:
    assert await Scaler(3).arun(2) == 6


def test_a_method_flow_validates_its_arguments_not_self() -> None:

    @dataclass
    class Typed:
        k: int

        @flow
        def add(self: Typed, x: int) -> int:  # an annotated receiver is not checked
            return self.k + x

    assert Typed(1).add("2") == 3  # coerced: "2" -> 2


# ---- a process pool pickles the receiver ------------------------------------------------


@pytest.mark.timeout(60)
def test_a_process_pool_runs_a_bound_method_task_with_a_pickled_self() -> None:
    import os

    s = Scaler(6)
    with ProcessPoolTaskRunner(max_workers=1) as runner:
        k, pid = s.who.submit().result(timeout=30)
        assert (k, pid != os.getpid()) == (6, True)
        assert s.scale.map([1, 2]).result(timeout=30) == [6, 12]
        assert [Scaler(i).scale.submit(1).result(timeout=30) for i in range(3)] == [0, 1, 2]
        assert Scaler.by_class.submit(1).result(timeout=30) == ("Scaler", 100)
        assert s.triple.submit(2).result(timeout=30) == 6
        # One pickled function per task, however many bound lookups sent runs.
        assert runner._pool is not None
        assert len(runner._pool._functions) == 4  # who, scale, by_class, triple


@pytest.mark.timeout(60)
def test_a_process_pool_pickles_a_local_class_instance_by_value() -> None:
    import threading

    class Local:
        def __init__(self) -> None:
            self.data = [1, 2, 3]

        @task
        def total(self, extra: int) -> int:
            self.data.append(extra)  # changes the worker's copy only
            return sum(self.data)

    class Locked:
        def __init__(self) -> None:
            self.lock = threading.Lock()

        @task
        def run(self) -> int:
            return 1

    local = Local()
    with ProcessPoolTaskRunner(max_workers=1):
        fut: TaskFuture[int] = local.total.submit(4)
        assert fut.result(timeout=30) == 10
        locked = Locked().run.submit()
        locked.wait(30)
    assert local.data == [1, 2, 3]
    assert locked.state.is_failed()
    error = str(locked.exception())
    assert "'run'" in error
    assert "lock" in error
