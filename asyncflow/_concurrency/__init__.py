"""Named concurrency and rate limits in one process (public: `asyncflow.concurrency`).

`_slots` is the sans-I/O core (counting, decay, the FIFO queue); `_registry` holds the
process's one instance under one lock and everything both drivers share; `_sync` and
`_asyncio` are the thin drivers, differing only in how a waiter sleeps and is woken.
"""
