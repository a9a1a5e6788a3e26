"""Named concurrency limits and rate limits, in one process (Prefect's
`prefect.concurrency`, without a server).

    from asyncflow.concurrency import set_limit
    from asyncflow.concurrency.sync import concurrency, rate_limit

    set_limit("database", 2)                              # at most 2 holders at once
    set_limit("api", 10, slot_decay_per_second=0.5)       # 10 calls, then 1 per 2 s

    with concurrency("database", occupy=1):               # threads
        ...
    async with asyncflow.concurrency.asyncio.concurrency("database"):   # coroutines
        ...
    rate_limit("api")                                     # take a slot, never give it back

Limits are set in code (`set_limit`) or by `ASYNCFLOW_CONCURRENCY_LIMITS`
(`"database=2,api=10:0.5"`: `name=limit[:slot_decay_per_second]`, read on first use;
code wins). Sync and async holders of a name share its slots and wait in one fair
line. A name without a limit is not limited (one warning per name) unless
`strict=True`, which makes it `ConcurrencySlotAcquisitionError`, as Prefect does.
The limits live in this process: worker processes of a `ProcessPoolTaskRunner` have
their own (see docs/prefect-paths.md).
"""

from .._concurrency._errors import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
)
from .._concurrency._registry import get_limit, set_limit
from .._public import publish
from . import asyncio, sync

__all__ = (
    "AcquireConcurrencySlotTimeoutError",
    "ConcurrencySlotAcquisitionError",
    "asyncio",
    "get_limit",
    "set_limit",
    "sync",
)

publish(__name__, __all__, globals())
