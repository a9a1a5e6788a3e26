"""Module-level tasks travel to other processes by name, `with_options` copies too."""

from __future__ import annotations

import pickle

from asyncflow import task
from asyncflow._runners._by_name import task_function_ref


@task
def doubled(x: int) -> int:
    return 2 * x


def test_a_module_level_task_ships_by_name() -> None:
    ref = task_function_ref(doubled)
    assert ref is not None
    assert pickle.loads(pickle.dumps(ref)) is doubled.fn


def test_a_with_options_copy_ships_by_name_too() -> None:
    copy = doubled.with_options(retries=2)
    ref = task_function_ref(copy)
    assert ref is not None
    assert pickle.loads(pickle.dumps(ref))(4) == 8


def test_a_local_task_does_not() -> None:
    @task
    def local(x: int) -> int:
        return x

    assert task_function_ref(local) is None
