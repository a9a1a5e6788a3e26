"""`with tags("a", "b"):`: Prefect's tags context, recorded in a `ContextVar`.

Nested blocks add to the tags around them; leaving a block restores them. A
ContextVar makes the tags follow the code that set them: each thread and each
asyncio task sees its own, and asyncflow copies the context into every task run, so
a task submitted inside the block sees them through `current_tags()`.

    >>> with tags("etl"):
    ...     with tags("nightly") as now:
    ...         sorted(now)
    ['etl', 'nightly']

Planned: `@task(tags=...)` / `@flow(tags=...)` and tags on run records (the
issue "One run lifecycle, owned by the core"); today tags are recorded, not used
by the engine.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ("current_tags", "tags")

_current: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "asyncflow_tags", default=frozenset()
)


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
