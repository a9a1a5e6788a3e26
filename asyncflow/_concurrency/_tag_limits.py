"""Tag concurrency limits: at most N runs carrying the tag `db` execute at once, where
N is the named limit `tag:db` (`set_limit("tag:db", N)` or
`ASYNCFLOW_CONCURRENCY_LIMITS="tag:db=N"`), as Prefect names the global limit behind
a tag limit since 3.4.19.

A run's limit is enforced where `max_concurrency` is, in the engine (`_core/_engine.py`
`start`): a ready run asks its limit before its runner gets it, so a run waiting for a
slot stays Pending, holds no thread or worker, and can be cancelled like any run not
started; the slot is held in this process until the run is final, wherever it
executes (a thread, the loop, a worker process, a cluster). A run whose tags have
limits gets a `TagLimit` of its own, which takes one slot of every limited tag at
once, in line with every other holder of those names (`_registry.queue_run`), then its
task's `max_concurrency` slot, if any (a run never waits for its task's slot while
it could be holding tag slots another run of it needs first: tags come first, so
the runs holding the task's slots all hold theirs too, and are executing).

A run submitted (or called) by a run that holds a tag's slot does not take another
slot of that tag: its parent waits for it while holding the slot, so with a limit of
1 it would wait for ever (a flow's tags, entered as a `with tags(...)` block, reach the
runs its runs submit). A direct call (`load()`, not `.submit()`) takes its slots
around the call, in the calling thread or coroutine, through the registry's own
drivers (`held_around_call`); it waits Pending as a submitted run does.

Runs that carry no limited tag pay one lock round-trip at submission (`limited`),
runs without tags nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from .._core import Run, RunLimit, admit_parked_run, release_limit_slot
from . import _asyncio, _registry, _sync
from ._slots import CONCURRENCY, Ticket

__all__ = (
    "TAG_PREFIX",
    "TagLimit",
    "held_around_call",
    "held_around_call_async",
    "limit_by_tags",
    "tag_limit_name",
)

TAG_PREFIX = "tag:"


def tag_limit_name(tag: str) -> str:
    """The named limit that limits runs carrying `tag`."""
    return TAG_PREFIX + tag


def limit_by_tags(run: Run, tags: frozenset[str]) -> None:
    """If some of `tags` have a limit now, `run` waits for their slots before it starts."""
    names = _registry.limited(tag_limit_name(tag) for tag in sorted(tags))
    held = _held_by_ancestors(run)
    names = tuple(name for name in names if name not in held)
    if names:
        run.limit = TagLimit(names, run.limit)


def _held_by_ancestors(run: Run) -> set[str]:
    """The tag limits whose slots the runs that submitted `run` hold (they execute)."""
    held: set[str] = set()
    parent = run.parent
    while parent is not None:
        if isinstance(parent.limit, TagLimit):
            held.update(parent.limit.names)
        parent = parent.parent
    return held


def _names_of(run: Run) -> list[str]:
    limit = run.limit
    return list(limit.names) if isinstance(limit, TagLimit) else []


@contextlib.contextmanager
def held_around_call(run: Run) -> Iterator[None]:
    """A direct call of a sync task: its tag slots, held around the call."""
    names = _names_of(run)
    if not names:
        yield
        return
    with _sync.concurrency(names):
        yield


@contextlib.asynccontextmanager
async def held_around_call_async(run: Run) -> AsyncIterator[None]:
    """A direct call of an async task: its tag slots, held around the call."""
    names = _names_of(run)
    if not names:
        yield
        return
    async with _asyncio.concurrency(names):
        yield


def _no_waker() -> None:
    """The waker of a ticket whose run is done with it."""


class TagLimit:
    """The limit of one run: a slot of each limit in `names`, then one of `inner` (its
    task's `max_concurrency`, None: none). The engine's limit interface:
    `acquire_or_park(run)` and `release()`, which returns a run parked on `inner` that
    now holds the freed slot (the engine starts it); slots granted later by the
    registry start the run through `admit_parked_run`."""

    __slots__ = ("_ticket", "inner", "names", "run")

    def __init__(self, names: tuple[str, ...], inner: RunLimit | None) -> None:
        self.run: Run | None = None  # from its acquiring to its release: whom to start
        self.names = names
        self.inner = inner
        self._ticket = Ticket(names, 1, CONCURRENCY, self._granted)

    def __repr__(self) -> str:
        return f"TagLimit({list(self.names)}, inner={self.inner!r})"

    def acquire_or_park(self, run: Run) -> bool:
        self.run = run  # first: the registry may grant the ticket from another thread
        holds_tags = _registry.queue_run(self._ticket)
        if holds_tags and (self.inner is None or self.inner.acquire_or_park(run)):
            return True
        # Parked (on the tags, or on the task's limit holding the tags): a run cancelled
        # meanwhile gives back what it holds and leaves the line.
        run.future.add_done_callback(self._forget)
        return False

    def release(self) -> Any:
        """The run holds every slot and is final (or passes them on): give them back."""
        self._give_back_tags()
        return None if self.inner is None else self.inner.release()

    def _granted(self) -> None:
        """The registry's waker: the tag slots are the run's now (any thread)."""
        run = self.run
        if run is None:
            return  # final meanwhile, and forgotten
        if self.inner is not None and not self.inner.acquire_or_park(run):
            return  # parked on its task's limit: that limit's release hands it on
        if not admit_parked_run(run):  # final meanwhile: it takes nothing
            self._give_back_tags()
            if self.inner is not None:
                release_limit_slot(self.inner)

    def _forget(self, _future: object) -> None:
        self._give_back_tags()

    def _give_back_tags(self) -> None:
        # `abandon` takes a waiting ticket out of the line and gives a granted one's
        # slots back; a second call does nothing, so every path may call it.
        self.run = None  # no cycle run -> limit -> run, nor limit -> ticket -> limit, left
        _registry.abandon(self._ticket)
        self._ticket.waker = _no_waker
