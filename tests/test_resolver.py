"""The sans-I/O resolver: unit rules, then random DAGs against a sequential reference.

No event loop here: the resolver is pure bookkeeping.
"""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncflow._core import _resolver
from asyncflow._core._resolver import (
    CycleError,
    Instruction,
    Outcome,
    Resolver,
    Skip,
    Start,
    Upstream,
)

C = Outcome.COMPLETED
F = Outcome.FAILED


def up(key: str, allow: bool = False, outcome: Outcome | None = None) -> Upstream[str]:
    return Upstream(key, allow, outcome)


# ---- immediate decisions -------------------------------------------------------------


def test_no_upstreams_starts_at_once_without_bookkeeping() -> None:
    r: Resolver[str] = Resolver()
    assert r.submit("a", []) == [Start("a")]
    assert r.submit("b", ()) == [Start("b")]
    assert len(r) == 0
    assert not r.is_waiting("a")


def test_all_upstreams_final_and_completed_starts_at_once() -> None:
    r: Resolver[str] = Resolver()
    assert r.submit("c", [up("a", outcome=C), up("b", outcome=C)]) == [Start("c")]
    assert len(r) == 0


def test_final_failed_upstream_skips_at_once() -> None:
    r: Resolver[str] = Resolver()
    assert r.submit("c", [up("a", outcome=C), up("b", outcome=F)]) == [Skip("c", "b")]
    assert len(r) == 0


def test_first_failed_upstream_in_submit_order_is_the_cause() -> None:
    r: Resolver[str] = Resolver()
    ups = [up("x", outcome=C), up("b", outcome=F), up("a", outcome=F)]
    assert r.submit("c", ups) == [Skip("c", "b")]


def test_allow_failure_upstream_does_not_skip() -> None:
    r: Resolver[str] = Resolver()
    assert r.submit("c", [up("a", allow=True, outcome=F)]) == [Start("c")]
    ups = [up("a", allow=True, outcome=F), up("b", outcome=F)]
    assert r.submit("d", ups) == [Skip("d", "b")]


# ---- waiting ---------------------------------------------------------------------------


def test_pending_upstream_waits_until_finished() -> None:
    r: Resolver[str] = Resolver()
    assert r.submit("b", [up("a")]) == []
    assert r.is_waiting("b")
    assert not r.is_waiting("a")  # tracked as an upstream, but not waiting itself
    assert len(r) == 2
    assert r.finish("a", C) == [Start("b")]
    assert not r.is_waiting("b")
    assert len(r) == 0


def test_waits_for_every_upstream_even_after_a_failure() -> None:
    r: Resolver[str] = Resolver()
    assert r.submit("c", [up("a"), up("b")]) == []
    assert r.finish("b", F) == []  # "a" (earlier in the list) may still fail
    assert r.is_waiting("c")
    assert r.finish("a", C) == [Skip("c", "b")]
    assert len(r) == 0


def test_cause_is_first_in_list_order_not_first_in_time() -> None:
    r: Resolver[str] = Resolver()
    r.submit("c", [up("a"), up("b", outcome=F)])
    assert r.finish("a", F) == [Skip("c", "a")]
    r.submit("d", [up("a2"), up("b", outcome=F)])
    assert r.finish("a2", C) == [Skip("d", "b")]
    r.submit("e", [up("p"), up("q")])
    assert r.finish("q", F) == []
    assert r.finish("p", F) == [Skip("e", "p")]
    r.submit("f", [up("p"), up("q")])
    assert r.finish("p", F) == []
    assert r.finish("q", F) == [Skip("f", "p")]
    assert len(r) == 0


def test_pending_allow_failure_upstream_starts_on_failure() -> None:
    r: Resolver[str] = Resolver()
    r.submit("b", [up("a", allow=True)])
    assert r.finish("a", F) == [Start("b")]
    assert len(r) == 0


def test_dependents_are_decided_in_submission_order() -> None:
    r: Resolver[str] = Resolver()
    for key in ("d3", "d1", "d2"):
        r.submit(key, [up("a")])
    assert r.finish("a", C) == [Start("d3"), Start("d1"), Start("d2")]


def test_started_run_with_dependents_is_tracked_until_finished() -> None:
    r: Resolver[str] = Resolver()
    r.submit("b", [up("a")])
    r.submit("c", [up("b")])
    assert r.finish("a", C) == [Start("b")]
    assert len(r) == 2  # "b" started but "c" waits for it
    assert not r.is_waiting("b")
    assert r.finish("b", C) == [Start("c")]
    assert len(r) == 0


# ---- duplicates ------------------------------------------------------------------------


def test_duplicate_pending_upstream_is_decided_by_one_finish() -> None:
    r: Resolver[str] = Resolver()
    r.submit("b", [up("a"), up("a")])
    assert len(r) == 2
    assert r.finish("a", C) == [Start("b")]
    assert len(r) == 0


@pytest.mark.parametrize("pending", [True, False])
def test_duplicate_with_and_without_allow_failure_skips(pending: bool) -> None:
    r: Resolver[str] = Resolver()
    outcome = None if pending else F
    ups = [up("a", allow=True, outcome=outcome), up("a", allow=False, outcome=outcome)]
    result = r.submit("b", ups)
    if pending:
        assert result == []
        result = r.finish("a", F)
    assert result == [Skip("b", "a")]
    assert len(r) == 0


def test_duplicate_all_allow_failure_starts() -> None:
    r: Resolver[str] = Resolver()
    r.submit("b", [up("a", allow=True), up("a", allow=True)])
    assert r.finish("a", F) == [Start("b")]


# ---- skip propagation ------------------------------------------------------------------


def test_skip_propagates_transitively_in_the_same_call() -> None:
    r: Resolver[str] = Resolver()
    r.submit("b", [up("a")])
    r.submit("c", [up("b")])
    r.submit("d", [up("c")])
    assert r.finish("a", F) == [Skip("b", "a"), Skip("c", "b"), Skip("d", "c")]
    assert len(r) == 0


def test_skip_propagation_is_breadth_first() -> None:
    # a -> b1 -> c1, a -> b2 -> c2, b2 -> e (allow_failure): level by level, each
    # level in submission order.
    r: Resolver[str] = Resolver()
    r.submit("b1", [up("a")])
    r.submit("b2", [up("a")])
    r.submit("c2", [up("b2")])
    r.submit("c1", [up("b1")])
    r.submit("e", [up("b2", allow=True)])
    assert r.finish("a", F) == [
        Skip("b1", "a"),
        Skip("b2", "a"),
        Skip("c1", "b1"),
        Skip("c2", "b2"),
        Start("e"),
    ]
    assert len(r) == 0


def test_skip_propagates_after_a_completed_finish() -> None:
    # "b" already had a failed upstream; "a" completing decides it as skipped, and
    # that skip is a failure for "c" even though the finish was COMPLETED.
    r: Resolver[str] = Resolver()
    r.submit("b", [up("a"), up("x", outcome=F)])
    r.submit("c", [up("b")])
    assert r.finish("a", C) == [Skip("b", "x"), Skip("c", "b")]
    assert len(r) == 0


def test_skipped_run_with_other_pending_upstreams_keeps_waiting() -> None:
    r: Resolver[str] = Resolver()
    r.submit("b", [up("a")])
    r.submit("c", [up("x"), up("b")])
    assert r.finish("a", F) == [Skip("b", "a")]
    assert r.is_waiting("c")
    assert r.finish("x", C) == [Skip("c", "b")]
    assert len(r) == 0


def test_finish_on_a_skipped_run_is_a_no_op() -> None:
    r: Resolver[str] = Resolver()
    r.submit("b", [up("a")])
    r.finish("a", F)
    assert r.finish("b", F) == []
    assert len(r) == 0


def test_finish_on_a_skipped_run_decides_late_waiters() -> None:
    # The engine may register a waiter on a skipped run before marking it final;
    # a later finish for it must then release that waiter.
    r: Resolver[str] = Resolver()
    r.submit("b", [up("a")])
    assert r.finish("a", F) == [Skip("b", "a")]
    r.submit("c", [up("b")])
    assert r.finish("b", F) == [Skip("c", "b")]
    assert len(r) == 0


def test_submitting_a_key_others_already_wait_for() -> None:
    r: Resolver[str] = Resolver()
    r.submit("c", [up("b")])
    assert r.submit("b", [up("a", outcome=C)]) == [Start("b")]
    assert len(r) == 2  # "b" is kept: "c" waits for it
    assert r.finish("b", C) == [Start("c")]
    assert len(r) == 0
    r.submit("c", [up("b")])
    assert r.submit("b", [up("a", outcome=F)]) == [Skip("b", "a"), Skip("c", "b")]
    assert len(r) == 0
    r.submit("c", [up("b")])
    assert r.submit("b", [up("a")]) == []
    assert r.finish("a", C) == [Start("b")]
    assert r.finish("b", F) == [Skip("c", "b")]
    assert len(r) == 0


# ---- cancel ----------------------------------------------------------------------------


def test_cancel_waiting_run_skips_its_dependents() -> None:
    r: Resolver[str] = Resolver()
    r.submit("b", [up("a")])
    r.submit("c", [up("b")])
    r.submit("d", [up("b", allow=True)])
    r.submit("e", [up("c")])
    assert r.cancel("b") == (True, [Skip("c", "b"), Start("d"), Skip("e", "c")])
    assert not r.is_waiting("b")
    assert len(r) == 0  # "a" has no waiting dependent left
    assert r.finish("a", C) == []


def test_cancel_keeps_upstream_tracked_for_other_dependents() -> None:
    r: Resolver[str] = Resolver()
    r.submit("b", [up("a"), up("a")])
    r.submit("c", [up("a")])
    assert r.cancel("b") == (True, [])
    assert len(r) == 2
    assert r.finish("a", C) == [Start("c")]
    assert len(r) == 0


def test_cancel_detaches_every_duplicate_occurrence() -> None:
    r: Resolver[str] = Resolver()
    r.submit("b", [up("a"), up("x", outcome=C), up("a", allow=True)])
    assert len(r) == 2
    assert r.cancel("b") == (True, [])
    assert len(r) == 0
    assert r.finish("a", C) == []


def test_cancel_after_some_upstreams_finished() -> None:
    r: Resolver[str] = Resolver()
    r.submit("c", [up("a"), up("b")])
    r.submit("d", [up("c")])
    assert r.finish("a", C) == []
    assert r.cancel("c") == (True, [Skip("d", "c")])
    assert len(r) == 0
    assert r.finish("b", C) == []


def test_cancel_when_not_waiting_returns_false() -> None:
    r: Resolver[str] = Resolver()
    assert r.cancel("unknown") == (False, [])
    r.submit("b", [up("a")])
    assert r.cancel("a") == (False, [])  # tracked as an upstream, not waiting
    r.finish("a", C)  # "b" started
    assert r.cancel("b") == (False, [])
    assert len(r) == 0


def test_cancelled_key_may_be_submitted_again() -> None:
    r: Resolver[str] = Resolver()
    r.submit("b", [up("a")])
    assert r.cancel("b")[0]
    assert r.submit("b", [up("a")]) == []
    assert r.finish("a", C) == [Start("b")]


# ---- misuse ----------------------------------------------------------------------------


def test_finish_unknown_key_is_a_no_op() -> None:
    r: Resolver[str] = Resolver()
    assert r.finish("nobody", C) == []
    assert r.finish("nobody", F) == []
    assert len(r) == 0


def test_finish_waiting_key_raises_and_changes_nothing() -> None:
    r: Resolver[str] = Resolver()
    r.submit("b", [up("a")])
    with pytest.raises(ValueError, match="still waiting"):
        r.finish("b", C)
    assert r.is_waiting("b")
    assert r.finish("a", C) == [Start("b")]


def test_submit_waiting_key_again_raises() -> None:
    r: Resolver[str] = Resolver()
    r.submit("b", [up("a")])
    with pytest.raises(ValueError, match="already waiting"):
        r.submit("b", [up("x")])
    assert len(r) == 2
    assert r.finish("a", C) == [Start("b")]


@pytest.mark.parametrize("outcome", [None, C, F])
def test_self_dependency_raises_cycle_error_naming_the_key(outcome: Outcome | None) -> None:
    r: Resolver[str] = Resolver()
    with pytest.raises(CycleError, match="'selfish'") as info:
        r.submit("selfish", [up("a"), up("selfish", outcome=outcome)])
    assert isinstance(info.value, ValueError)
    assert len(r) == 0  # nothing registered, not even "a"


def test_indirect_cycle_raises_and_changes_nothing() -> None:
    r: Resolver[str] = Resolver()
    r.submit("b", [up("a")])
    r.submit("c", [up("b")])
    with pytest.raises(CycleError, match="'a'"):
        r.submit("a", [up("x"), up("c")])
    assert not r.is_waiting("a")
    assert len(r) == 3
    assert r.finish("a", C) == [Start("b")]
    assert r.finish("b", C) == [Start("c")]
    assert len(r) == 0


def test_instructions_are_frozen_values() -> None:
    assert Start("a") == Start("a")
    assert hash(Skip("a", "b")) == hash(Skip("a", "b"))
    assert Upstream("a") == Upstream("a", False, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Start("a").key = "b"  # type: ignore[misc]
    assert not hasattr(Start("a"), "__dict__")  # slots
    assert _resolver.__all__ == (
        "CycleError",
        "Instruction",
        "Outcome",
        "Resolver",
        "Skip",
        "Start",
        "Upstream",
    )


def test_keys_are_used_by_hash_and_equality_so_identity_keys_work() -> None:
    class Run:  # hashed by identity, as the engine's futures are
        pass

    a, b = Run(), Run()
    r: Resolver[Run] = Resolver()
    r.submit(b, [Upstream(a)])
    assert r.finish(Run(), C) == []
    assert r.finish(a, C) == [Start(b)]


# ---- layering --------------------------------------------------------------------------


def test_module_imports_only_the_standard_library_and_no_concurrency() -> None:
    source = Path(_resolver.__file__).read_text(encoding="utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "the resolver imports nothing from the package"
            assert node.module is not None
            imported.add(node.module.split(".")[0])
    assert imported, "parsed no imports at all: the check would be vacuous"
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
    forbidden = {"asyncio", "threading", "_thread", "concurrent", "multiprocessing", "anyio"}
    assert not imported & forbidden


def test_loading_the_module_alone_does_not_import_asyncio() -> None:
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('r', {_resolver.__file__!r})\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "sys.modules['r'] = mod\n"
        "spec.loader.exec_module(mod)\n"
        "assert mod.Resolver\n"
        "print('asyncio' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


# ---- random DAGs against a sequential reference ----------------------------------------


@dataclass
class Node:
    ups: list[tuple[int, bool]]  # (upstream index < own index, allow_failure)
    fails: bool
    cancel: bool  # try to cancel it while it waits


@st.composite
def dags(draw: st.DrawFn) -> list[Node]:
    """Up to 40 nodes; node i depends on nodes < i (duplicates allowed).

    One 64-bit integer per node: every hypothesis draw costs tens of microseconds,
    and an integer still shrinks towards "no upstreams, succeeds, not cancelled".
    """
    n = draw(st.integers(0, 40))  # plain `st.lists` sizes would be mostly tiny
    nodes = []
    for i, code in enumerate(draw(st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n))):
        code, fails = divmod(code, 4)
        code, cancel = divmod(code, 8)
        code, count = divmod(code, 5)
        ups = []
        for _ in range(count if i else 0):
            code, pick = divmod(code, 2**14)
            # Half the picks among the last 3 nodes: long chains and duplicates.
            back = (pick >> 2) % (i if pick & 2 else min(i, 3))
            ups.append((i - 1 - back, bool(pick & 1)))
        nodes.append(Node(ups, fails == 3, cancel == 7))
    return nodes


class Chooser:
    """Schedule choices read from hypothesis bytes (one draw for the whole schedule)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def __call__(self, k: int) -> int:
        """An index in range(k); 0 once the bytes run out, which still terminates."""
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1] % k


def reference(nodes: Sequence[Node], cancelled: set[int]) -> list[tuple[str, int | None]]:
    """Evaluate in index order: the statuses (and skip causes) a correct engine reaches."""
    result: list[tuple[str, int | None]] = []
    for i, node in enumerate(nodes):
        if i in cancelled:
            result.append(("cancelled", None))
            continue
        cause = next(
            (j for j, allow in node.ups if not allow and result[j][0] != "completed"), None
        )
        if cause is not None:
            result.append(("skipped", cause))
        else:
            result.append(("failed" if node.fails else "completed", None))
    return result


FINAL = ("completed", "failed", "skipped", "cancelled")


@settings(max_examples=300, deadline=None)
@given(
    nodes=dags(),
    schedule=st.integers(0, 512).flatmap(lambda k: st.binary(min_size=k, max_size=k)),
)
def test_random_dags_match_the_sequential_reference(nodes: list[Node], schedule: bytes) -> None:
    choose = Chooser(schedule)
    r: Resolver[int] = Resolver()
    n = len(nodes)
    status: list[str | None] = [None] * n  # None: not submitted yet
    cause: list[int | None] = [None] * n
    # Final runs whose `finish` the resolver has not been told yet. While a run is in
    # here, a submit may pass its outcome or None (the engine saw it final, or not).
    unnotified: list[int] = []
    # Per waiting run: upstreams it passed as pending (None).
    passed_pending: dict[int, set[int]] = {}
    to_cancel: list[int] = []
    cancelled: set[int] = set()
    submitted = 0

    def apply(instructions: list[Instruction[int]]) -> None:
        for ins in instructions:
            key = ins.key
            assert status[key] == "waiting", (ins, status[key])  # decided exactly once
            # Never decided before every upstream is final.
            assert all(status[j] in FINAL for j, _ in nodes[key].ups), ins
            del passed_pending[key]
            if isinstance(ins, Start):
                status[key] = "running"
            else:
                assert isinstance(ins, Skip)
                status[key] = "skipped"
                cause[key] = ins.upstream
                # A skip is final for the runs already waiting on `key`; later submits
                # may still pass it as pending until its (no-op) finish.
                for waiting in passed_pending.values():
                    waiting.discard(key)
                unnotified.append(key)

    def outcome_of(j: int) -> Outcome:
        return Outcome.COMPLETED if status[j] == "completed" else Outcome.FAILED

    def check_bookkeeping() -> None:
        waiting = {k for k in range(submitted) if status[k] == "waiting"}
        for k in range(submitted):
            assert r.is_waiting(k) == (k in waiting), k
        targets = set().union(*passed_pending.values()) if passed_pending else set()
        assert len(r) == len(waiting | targets)

    while True:
        running = [k for k in range(submitted) if status[k] == "running"]
        actions = []
        if submitted < n:
            actions.append("submit")
        if running:
            actions.append("finish")
        if unnotified:
            actions.append("notify")
        if to_cancel:
            actions.append("cancel")
        if not actions:
            break
        action = actions[choose(len(actions))]
        if action == "submit":
            i = submitted
            submitted += 1
            ups: list[Upstream[int]] = []
            pending: set[int] = set()
            for j, allow in nodes[i].ups:
                if status[j] in FINAL and (j not in unnotified or choose(2) == 0):
                    ups.append(Upstream(j, allow, outcome_of(j)))
                else:
                    ups.append(Upstream(j, allow))
                    pending.add(j)
            status[i] = "waiting"
            passed_pending[i] = pending
            instructions = r.submit(i, ups)
            # Decided at once exactly when nothing was passed as pending.
            assert bool(instructions) == (not pending)
            if instructions:
                assert instructions[0].key == i
            apply(instructions)
            if nodes[i].cancel:
                to_cancel.append(i)
        elif action == "finish":
            k = running[choose(len(running))]
            status[k] = "failed" if nodes[k].fails else "completed"
            unnotified.append(k)
        elif action == "notify":
            k = unnotified.pop(choose(len(unnotified)))
            for waiting in passed_pending.values():
                waiting.discard(k)
            apply(r.finish(k, outcome_of(k)))
        else:
            k = to_cancel.pop(choose(len(to_cancel)))
            was_waiting = status[k] == "waiting"
            ok, instructions = r.cancel(k)
            assert ok == was_waiting
            if ok:
                del passed_pending[k]
                for waiting in passed_pending.values():  # final for its waiters
                    waiting.discard(k)
                status[k] = "cancelled"
                cancelled.add(k)
                unnotified.append(k)
                apply(instructions)
            else:
                assert instructions == []
        check_bookkeeping()

    # Everything decided and ended; nothing left behind.
    assert all(s in FINAL for s in status), status
    assert len(r) == 0
    assert list(zip(status, cause, strict=True)) == reference(nodes, cancelled)
