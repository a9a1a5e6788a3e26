"""`with tags("a", "b"):`: Prefect's tags context, recorded in a `ContextVar`.

Nested blocks add to the tags around them; leaving a block restores them. A
ContextVar makes the tags follow the code that set them: each thread and each
asyncio task sees its own, and asyncflow copies the context into every task run, so
a task submitted inside the block sees them through `current_tags()`.

    >>> with tags("etl"):
    ...     with tags("nightly") as now:
    ...         sorted(now)
    ['etl', 'nightly']

A run's tags are its task's own (`@task(tags=[...])`) with the tags around its
submission (`run_tags`); a flow enters its own tags (`@flow(tags=[...])`) as a
`with tags(...)` block around its body, so the runs it submits, and nested flows,
carry them too. Tags show on the run records hooks get (`TaskRun.tags`,
`FlowRun.tags`), and a named limit `tag:<name>` limits the runs carrying the tag
(`_concurrency/_tag_limits.py`).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ("check_tags", "current_tags", "run_tags", "tags")

_NO_TAGS: frozenset[str] = frozenset()

_current: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "asyncflow_tags", default=_NO_TAGS
)


def check_tags(value: Any) -> frozenset[str]:
    """The `tags=` option of a task or flow: an iterable of strings (None: none). A
    bare string is refused: Prefect would iterate it into one tag per character."""
    if value is None:
        return _NO_TAGS
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"tags must be a list of strings, got {type(value).__name__}: {value!r}")
    found = frozenset(value)
    for tag in found:
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"tags must be non-empty strings, got {tag!r} in {value!r}")
    return found


def run_tags(own: frozenset[str]) -> frozenset[str]:
    """The tags of a run submitted now: `own` (its task's) and those around it."""
    around = _current.get()
    if not around:
        return own  # the common case: no `with tags(...)` block, no union built
    return around | own if own else around


def current_tags() -> frozenset[str]:
    """The tags of every `with tags(...)` block around this code (empty outside)."""
    return _current.get()


@contextmanager
def tags(*new_tags: str) -> Iterator[set[str]]:
    """Add `new_tags` to the current tags for the `with` block; yields them all.

    Each tag is a string. As Prefect's `tags`: `with tags("a", "b") as current:`.
    """
    for tag in new_tags:
        if not isinstance(tag, str):
            raise TypeError(f"tags must be strings, got {type(tag).__name__}: {tag!r}")
    combined = _current.get().union(new_tags)
    token = _current.set(combined)
    try:
        yield set(combined)
    finally:
        _current.reset(token)
