"""Prefect's `prefect.context` path, for the part asyncflow has: `tags`.

`from asyncflow.context import tags` is the same as `from asyncflow import tags`.
"""

from ._tags import tags

__all__ = ("tags",)
