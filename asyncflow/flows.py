"""Flows under Prefect's module path: `from asyncflow.flows import flow, Flow`.

The same objects as `asyncflow.flow` and `asyncflow.Flow`.
"""

from ._flows import Flow, flow
from ._public import publish

__all__ = ("Flow", "flow")

publish(__name__, __all__, globals())
