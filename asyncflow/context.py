"""Prefect's `prefect.context` path, for the part asyncflow has: `tags`.

`from asyncflow.context import tags` is the same as `from asyncflow import tags`.
"""

from ._public import publish
from ._tags import tags

__all__ = ("tags",)

publish(__name__, __all__, globals())
