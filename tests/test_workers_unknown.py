"""Messages for tasks that no worker can import (issue 14): they fail their future
with an error naming the task and the module, instead of waiting forever.

A worker serving a module whole (`modules=`, the CLI's bare `module`) claims that
module's keys it did not find; one with `import_any` (the CLI's `--any`) claims every
key and imports modules on demand, but only from messages whose seal is good. The
messages here are sealed by hand, as a submitter running other code would send them
(a submitter checks its own task keys at submit)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import workers_tasks as wt
from helpers import WAIT
from workers_support import ThreadWorker

from asyncflow import task_worker
from asyncflow._broker import RunStatus, broker_secret, open_broker, sign
from asyncflow._taskworkers import TaskWorker
from asyncflow._taskworkers._cli import main
from asyncflow._taskworkers._wire import Call, encode_call

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def url() -> str:
    return f"memory://test-{uuid.uuid4().hex}"


def send(url: str, key: str, secret: bytes | None = None, **params: Any) -> str:
    """Enqueue a sealed call of `key` (sealed with `secret`, default the broker's)."""
    broker = open_broker(url)  # the process's one memory broker of that name
    run_id = uuid.uuid4().hex
    data = encode_call(Call(key, key.partition(":")[2], None, params))
    envelope = sign(secret or broker_secret(broker), data, context=run_id.encode())
    broker.enqueue(run_id, key, envelope, max_deliveries=3)
    return run_id


def outcome_of(url: str, run_id: str) -> BaseException:
    fut = task_worker.future(run_id, broker=url)
    error = fut.result(timeout=WAIT, raise_on_failure=False)
    assert fut.state.is_failed(), fut.state
    assert isinstance(error, BaseException)
    return error


def test_a_module_worker_fails_a_task_its_module_does_not_have(url: str) -> None:
    renamed = send(url, "workers_tasks:renamed_task", i=1)
    with ThreadWorker(url, wt.noop, wt.anoop, name="w-7", modules=["workers_tasks"]):
        error = outcome_of(url, renamed)
        assert isinstance(error, ImportError)
        assert str(error) == (
            "task 'renamed_task' is not in module 'workers_tasks' on task worker w-7 "
            "(it serves: anoop, noop)"
        )
        assert outcome_of(url, send(url, "workers_tasks:Nested.deeper")).name == "workers_tasks"
        assert (
            task_worker.future(send(url, "workers_tasks:noop", i=4), broker=url).result(
                timeout=WAIT
            )
            == 4
        )  # its own tasks as ever


def test_a_worker_leaves_other_modules_and_unserved_keys_queued(url: str) -> None:
    other = send(url, "some_other_module:f")
    sub = send(url, "workers_tasks_extra:f")  # a module whose name extends the served one
    unserved = send(url, "workers_tasks:hold")  # a worker of single tasks serves only those
    with ThreadWorker(url, wt.noop, name="w-7", modules=["workers_tasks_two"]):
        # Claims are oldest first: once this later run is done, the worker had its chance.
        assert (
            task_worker.future(send(url, "workers_tasks:noop", i=2), broker=url).result(
                timeout=WAIT
            )
            == 2
        )
    broker = open_broker(url)
    assert [broker.status(r) for r in (other, sub, unserved)] == [RunStatus.QUEUED] * 3


def test_an_any_worker_imports_on_demand_and_fails_what_does_not_import(url: str) -> None:
    ok = send(url, "workers_tasks:noop", i=5)
    missing = send(url, "no_such_module_for_asyncflow:f")
    not_a_task = send(url, "workers_tasks:WAIT")
    with ThreadWorker(url, name="w-7", import_any=True) as worker:
        assert task_worker.future(ok, broker=url).result(timeout=WAIT) == 5
        error = outcome_of(url, missing)
        assert isinstance(error, ImportError)
        assert error.name == "no_such_module_for_asyncflow"
        assert str(error) == (
            "task 'f': module 'no_such_module_for_asyncflow' does not import on task worker "
            "w-7: ModuleNotFoundError: No module named 'no_such_module_for_asyncflow'"
        )
        error = outcome_of(url, not_a_task)
        assert isinstance(error, ImportError)
        assert "task 'WAIT' is not in module 'workers_tasks' on task worker w-7" in str(error)
        assert "workers_tasks:noop" in worker.tasks  # imported once, then served


def test_an_any_worker_never_imports_a_module_named_by_a_forged_message(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"asyncflow_test_imported_{uuid.uuid4().hex}"
    proof = tmp_path / "imported"
    (tmp_path / f"{name}.py").write_text(f"open({str(proof)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    forged = send(url, f"{name}:f", secret=b"not the secret")
    with ThreadWorker(url, name="w-7", import_any=True):
        fut = task_worker.future(forged, broker=url)
        fut.wait(WAIT)
        assert fut.state.is_crashed()
    assert not proof.exists()
    assert name not in sys.modules


def test_worker_options_are_checked(url: str) -> None:
    with pytest.raises(ValueError, match="at least one task"):
        TaskWorker([], url)
    assert TaskWorker([], url, import_any=True).tasks == {}
    with pytest.raises(ValueError, match="without ':'"):
        TaskWorker([wt.noop], url, modules=["workers_tasks:noop"])
    with pytest.raises(TypeError, match="modules"):
        TaskWorker([wt.noop], url, modules="workers_tasks")
    with pytest.raises(SystemExit, match="or pass --any"):
        main(["worker", "--broker", url])
