"""Named limits for sync code (Prefect's `prefect.concurrency.sync`): `with
concurrency("database", occupy=1):` and `rate_limit("api")`. See `asyncflow.concurrency`.
"""

from .._concurrency._errors import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
)
from .._concurrency._sync import concurrency, rate_limit
from .._public import publish

__all__ = (
    "AcquireConcurrencySlotTimeoutError",
    "ConcurrencySlotAcquisitionError",
    "concurrency",
    "rate_limit",
)

publish(__name__, __all__, globals())
