"""Prefect's `prefect.utilities` path, for the parts asyncflow has: `annotations`."""

from . import annotations

__all__ = ("annotations",)
