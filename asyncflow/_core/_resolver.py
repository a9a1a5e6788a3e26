"""The sans-I/O dependency resolver: events in, instructions out.

The engine tells the resolver what happened ("run X was submitted with these
upstreams", "run Y finished", "cancel Z") and gets back what to do ("start X",
"X will never run because Y did not complete"). Nothing here does I/O, awaits,
locks or logs, so every rule is tested without an event loop. Keys are any
hashable objects; the engine uses its futures, hashed by identity.

>>> r: Resolver[str] = Resolver()
>>> r.submit("load", [])                        # nothing to wait for
[Start(key='load')]
>>> r.submit("train", [Upstream("load")])       # "load" is not final yet
[]
>>> r.submit("report", [Upstream("train", allow_failure=True)])
[]
>>> r.finish("load", Outcome.FAILED)            # skips propagate in one call
[Skip(key='train', upstream='load'), Start(key='report')]
>>> len(r)                                      # nothing left behind
0

Traversal order: breadth-first. `finish`/`cancel` first decide the direct
dependents of the finished key, in the order they were submitted; the dependents
of a run skipped on the way are decided after that, in the order the skips were
emitted (each level again in submission order).

Contract with the caller: pass `Upstream(key, outcome=...)` for an upstream it knows
is final; `outcome=None` makes the resolver wait for a later `finish(key, ...)`, which
the resolver cannot check will come (it keeps no record of finished keys, so that
nothing grows). `finish` for a key nobody waits for is a cheap no-op, so calling it for
every run that ends, skipped ones included, is always safe.

Not thread-safe: the engine serialises calls under its own lock.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

__all__ = ("CycleError", "Instruction", "Outcome", "Resolver", "Skip", "Start", "Upstream")

K = TypeVar("K")


class Outcome(enum.Enum):
    """How a final run ended, as far as its dependents care."""

    COMPLETED = "completed"
    FAILED = "failed"  # anything final that is not COMPLETED: failed, crashed, cancelled, skipped


@dataclass(frozen=True, slots=True)
class Upstream(Generic[K]):
    """One dependency of a submitted run; `outcome=None` means "not final yet"."""

    key: K
    allow_failure: bool = False
    outcome: Outcome | None = None


@dataclass(frozen=True, slots=True)
class Start(Generic[K]):
    """All upstreams of `key` are final and acceptable: start running it."""

    key: K


@dataclass(frozen=True, slots=True)
class Skip(Generic[K]):
    """`key` will never run (NotReady) because `upstream` did not complete."""

    key: K
    upstream: K


Instruction: TypeAlias = Start[K] | Skip[K]


class CycleError(ValueError):
    """A run that depends, directly or through waiting runs, on itself."""


# "No failing upstream seen": larger than any index, so `idx < cause` needs no None check.
_NO_CAUSE = sys.maxsize


class _Node(Generic[K]):
    """Bookkeeping for one key: a waiting run, a key others wait for, or both."""

    __slots__ = ("cause", "dependents", "key", "pending", "ups")

    def __init__(self, key: K) -> None:
        self.key = key
        # (dependent node, index in its upstream tuple), one entry per occurrence, in
        # submission order. The index lets a failure update the dependent's first cause
        # in O(1) instead of rescanning its upstreams.
        self.dependents: list[tuple[_Node[K], int]] = []
        # Waiting runs only: > 0 while some upstream occurrence is not final.
        self.pending = 0
        self.cause = _NO_CAUSE  # index of the first failed non-allow-failure upstream
        self.ups: tuple[Upstream[K], ...] = ()  # kept to detach on cancel / name the cause


class Resolver(Generic[K]):
    """Tracks runs waiting on upstreams; see the module docstring."""

    __slots__ = ("_nodes",)

    def __init__(self) -> None:
        # Invariant: every node here is waiting (pending > 0) or has dependents.
        # That is what makes `len` mean "tracked" and keeps memory bounded.
        self._nodes: dict[K, _Node[K]] = {}

    def __len__(self) -> int:
        return len(self._nodes)

    def is_waiting(self, key: K) -> bool:
        node = self._nodes.get(key)
        return node is not None and node.pending > 0

    def submit(self, key: K, upstreams: Sequence[Upstream[K]]) -> list[Instruction[K]]:
        """Register `key`; start or skip it now if every upstream is already final."""
        nodes = self._nodes
        node = nodes.get(key)
        if node is not None and node.pending:
            raise ValueError(f"{key!r} is already waiting on its upstreams")
        ups = tuple(upstreams)  # no copy if the caller passed a tuple
        pending = 0
        cause = _NO_CAUSE
        # Validate and scan before touching any state, so a raise leaves none behind.
        for i, up in enumerate(ups):
            if up.key == key:
                raise CycleError(f"{key!r} depends on itself")
            outcome = up.outcome
            if outcome is None:
                pending += 1
            elif outcome is Outcome.FAILED and not up.allow_failure and i < cause:
                cause = i
        if not pending:
            if cause == _NO_CAUSE:
                # A started run needs no entry; one that others already wait for keeps
                # its node until `finish`.
                return [Start(key)]
            out: list[Instruction[K]] = [Skip(key, ups[cause].key)]
            if node is not None:  # rare: others waited for `key` before it was submitted
                del nodes[key]
                self._settle(node, True, out)
            return out
        if node is None:
            node = nodes[key] = _Node(key)
        elif self._reaches_pending(node, ups):
            raise CycleError(f"{key!r} depends on itself through runs that wait on it")
        node.ups = ups
        node.pending = pending
        node.cause = cause
        for i, up in enumerate(ups):
            if up.outcome is None:
                target = nodes.get(up.key)
                if target is None:
                    # Never seen: the engine calls `finish` for every run that ends.
                    target = nodes[up.key] = _Node(up.key)
                target.dependents.append((node, i))
        return []

    def finish(self, key: K, outcome: Outcome) -> list[Instruction[K]]:
        """`key` ended with `outcome`: decide the runs that waited for it."""
        node = self._nodes.get(key)
        if node is None:
            return []  # nobody waits: the common case, kept cheap
        if node.pending:
            raise ValueError(f"{key!r} cannot finish: it is still waiting on its upstreams")
        del self._nodes[key]
        out: list[Instruction[K]] = []
        self._settle(node, outcome is Outcome.FAILED, out)
        return out

    def cancel(self, key: K) -> tuple[bool, list[Instruction[K]]]:
        """Drop `key` if it is still waiting; its dependents see it as FAILED.

        Returns `(False, [])` if `key` is not waiting (started, final or unknown):
        only the engine can cancel a run that started.
        """
        nodes = self._nodes
        node = nodes.get(key)
        if node is None or not node.pending:
            return False, []
        # Detach from upstreams still pending, so they do not outlive their last
        # waiting dependent (cancel is rare: a linear scan of their lists is fine).
        for up in node.ups:
            if up.outcome is None:
                target = nodes.get(up.key)
                if target is not None:
                    deps = target.dependents
                    deps[:] = [entry for entry in deps if entry[0] is not node]
                    if not deps and not target.pending:
                        del nodes[up.key]
        node.pending = 0
        node.ups = ()
        del nodes[key]
        out: list[Instruction[K]] = []
        self._settle(node, True, out)
        return True, out

    def _settle(self, node: _Node[K], failed: bool, out: list[Instruction[K]]) -> None:
        """`node` (already removed) is final: decide its dependents, breadth-first."""
        nodes = self._nodes
        queue = [node]  # nodes whose dependents must hear the news; grows only on skips
        for current in queue:
            for dep, idx in current.dependents:
                if failed and idx < dep.cause and not dep.ups[idx].allow_failure:
                    dep.cause = idx
                dep.pending -= 1
                if dep.pending:
                    continue
                # Decided: everything it waited for is final.
                if dep.cause == _NO_CAUSE:
                    out.append(Start(dep.key))
                    dep.ups = ()
                    if not dep.dependents:  # else stays, as a key others wait for
                        del nodes[dep.key]
                else:
                    out.append(Skip(dep.key, dep.ups[dep.cause].key))
                    dep.ups = ()
                    del nodes[dep.key]
                    if dep.dependents:
                        queue.append(dep)
            # Everything after the first node propagates a skip, which is a failure.
            failed = True

    def _reaches_pending(self, node: _Node[K], ups: tuple[Upstream[K], ...]) -> bool:
        """Does a pending upstream in `ups` (transitively) wait on `node`?

        Only called when `node` has dependents before it is submitted, which the
        engine never does in the common order, so this walk stays off the hot path.
        """
        wanted = {up.key for up in ups if up.outcome is None}
        seen: set[int] = set()
        stack = [node]
        while stack:
            for dep, _ in stack.pop().dependents:
                if dep.key in wanted:
                    return True
                if id(dep) not in seen:
                    seen.add(id(dep))
                    stack.append(dep)
        return False
