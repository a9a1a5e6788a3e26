"""Property test of the whole engine: random DAGs of sync and async tasks, some
failing, with data edges, `allow_failure` edges and `wait_for` edges, submitted through
a real `ThreadPoolTaskRunner` (and, fewer examples, a `ProcessPoolTaskRunner`) in a
(sync or async) flow, compared with a sequential
reference evaluator: every run's final state name, value, error and error cause."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncflow import TaskFuture, allow_failure, exceptions, flow, task
from asyncflow.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

MODES = ("data", "data_allow", "wait", "wait_allow")


class NodeError(Exception):
    def __init__(self, node: int) -> None:
        super().__init__(f"node {node} failed")
        self.node = node


@dataclass(frozen=True)
class Node:
    is_async: bool
    fails: bool
    deps: tuple[tuple[int, str], ...]  # (upstream index, mode), in argument order


def _summary(value: Any) -> Any:
    """What a node records about one of its inputs."""
    if isinstance(value, NodeError):
        return ("failed", value.node)
    if isinstance(value, exceptions.UpstreamFailed):
        return ("not-ready",)
    return value


def _outcome(index: int, inputs: list[Any], fails: bool) -> Any:
    if fails:
        raise NodeError(index)
    return ("node", index, tuple(_summary(v) for v in inputs))


@task
def sync_node(index: int, inputs: list[Any], fails: bool) -> Any:
    return _outcome(index, inputs, fails)


@task
async def async_node(index: int, inputs: list[Any], fails: bool) -> Any:
    await asyncio.sleep(0)  # let other runs interleave
    return _outcome(index, inputs, fails)


@st.composite
def dags(draw: st.DrawFn) -> list[Node]:
    count = draw(st.integers(min_value=1, max_value=12))
    nodes = []
    for i in range(count):
        deps: list[tuple[int, str]] = []
        if i:
            deps = draw(
                st.lists(
                    st.tuples(st.integers(0, i - 1), st.sampled_from(MODES)),
                    max_size=min(i, 4),
                    unique_by=lambda dep: dep[0],
                )
            )
        fails = draw(st.integers(0, 3)) == 0  # about one node in four fails
        nodes.append(Node(draw(st.booleans()), fails, tuple(deps)))
    return nodes


# ---- the reference: evaluate the DAG in order, one node at a time ---------------------------


@dataclass
class Expected:
    state: str  # "Completed", "Failed" or "NotReady"
    value: Any = None
    cause: int | None = None  # for NotReady: the upstream its error names
    root: int | None = None  # for NotReady: the failed node whose error is the __cause__


def _ordered_deps(node: Node) -> list[tuple[int, str]]:
    """Data edges first, then wait_for edges (the order the engine names a failure in)."""
    data = [d for d in node.deps if d[1].startswith("data")]
    waits = [d for d in node.deps if d[1].startswith("wait")]
    return data + waits


def reference(nodes: list[Node]) -> list[Expected]:
    out: list[Expected] = []
    for i, node in enumerate(nodes):
        blocking = [
            j
            for j, mode in _ordered_deps(node)
            if "allow" not in mode and out[j].state != "Completed"
        ]
        if blocking:
            named = blocking[0]
            root = out[named].root if out[named].state == "NotReady" else named
            out.append(Expected("NotReady", cause=named, root=root))
            continue
        if node.fails:
            out.append(Expected("Failed"))
            continue
        inputs = []
        for j, mode in node.deps:
            if not mode.startswith("data"):
                continue
            up = out[j]
            if up.state == "Completed":
                inputs.append(up.value)
            elif up.state == "Failed":
                inputs.append(("failed", j))
            else:
                inputs.append(("not-ready",))
        out.append(Expected("Completed", ("node", i, tuple(inputs))))
    return out


# ---- the engine ------------------------------------------------------------------------------


def _submit_all(nodes: list[Node]) -> list[TaskFuture[Any]]:
    futures: list[TaskFuture[Any]] = []
    for i, node in enumerate(nodes):
        inputs: list[Any] = []
        wait_for: list[Any] = []
        for j, mode in node.deps:
            up: Any = futures[j]
            if "allow" in mode:
                up = allow_failure(up)
            (inputs if mode.startswith("data") else wait_for).append(up)
        use = async_node if node.is_async else sync_node
        futures.append(use.submit(i, inputs, node.fails, wait_for=wait_for or None))
    return futures


def run_engine(
    nodes: list[Node], workers: int, async_flow: bool, processes: bool = False
) -> list[TaskFuture[Any]]:
    futures: list[TaskFuture[Any]] = []
    runner: TaskRunner = (
        ProcessPoolTaskRunner(max_workers=workers)
        if processes
        else ThreadPoolTaskRunner(max_workers=workers)
    )

    if async_flow:

        @flow(task_runner=runner)
        async def adag() -> None:
            futures.extend(_submit_all(nodes))

        asyncio.run(adag())
    else:

        @flow(task_runner=runner)
        def dag() -> None:
            futures.extend(_submit_all(nodes))

        dag()
    return futures


def check(nodes: list[Node], futures: list[TaskFuture[Any]]) -> None:
    expected = reference(nodes)
    assert len(futures) == len(expected)
    for i, (fut, exp) in enumerate(zip(futures, expected, strict=True)):
        assert fut.done(), f"node {i} not final after the flow returned"
        state = fut.state
        assert state.name == exp.state, f"node {i}: {state} != {exp}"
        if exp.state == "Completed":
            assert state.is_completed()
            assert fut.result() == exp.value, f"node {i}"
        elif exp.state == "Failed":
            assert state.is_failed()
            err = fut.exception()
            assert isinstance(err, NodeError)
            assert err.node == i
        else:
            assert state.is_pending()
            assert state.is_final()
            err = fut.exception()
            assert isinstance(err, exceptions.UpstreamFailed), f"node {i}: {err!r}"
            assert exp.root is not None
            assert err.__cause__ is futures[exp.root].exception(), f"node {i}"


@pytest.mark.timeout(60)
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(nodes=dags(), workers=st.integers(1, 4), async_flow=st.booleans())
def test_engine_matches_the_sequential_reference(
    nodes: list[Node], workers: int, async_flow: bool
) -> None:
    futures = run_engine(nodes, workers, async_flow)
    check(nodes, futures)


@pytest.mark.timeout(120)
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(nodes=dags(), async_flow=st.booleans())
def test_engine_on_processes_matches_the_sequential_reference(
    nodes: list[Node], async_flow: bool
) -> None:
    # The same DAGs with every run in a worker process (values and errors pickled).
    futures = run_engine(nodes, 2, async_flow, processes=True)
    check(nodes, futures)


def test_reference_evaluator_on_a_known_dag() -> None:
    # 0 fails; 1 needs 0 (NotReady); 2 allows 0; 3 waits for 1 allowing it; 4 needs 2 and 3
    nodes = [
        Node(False, True, ()),
        Node(True, False, ((0, "data"),)),
        Node(False, False, ((0, "data_allow"),)),
        Node(True, False, ((1, "wait_allow"), (2, "data"))),
        Node(False, False, ((3, "wait"), (2, "data"), (1, "data_allow"))),
        Node(False, False, ((4, "wait"), (1, "data"))),
    ]
    expected = reference(nodes)
    assert [e.state for e in expected] == [
        "Failed",
        "NotReady",
        "Completed",
        "Completed",
        "Completed",
        "NotReady",
    ]
    assert expected[2].value == ("node", 2, (("failed", 0),))
    assert expected[5].cause == 1  # the data edge is named before the wait_for edge
    assert expected[5].root == 0  # the cascade started at node 0
    for async_flow in (False, True):
        check(nodes, run_engine(nodes, 2, async_flow))
