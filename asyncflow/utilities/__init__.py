"""Prefect's `prefect.utilities` path, for the parts asyncflow has: `annotations`."""

from .._public import publish
from . import annotations

__all__ = ("annotations",)

publish(__name__, __all__, globals())
