"""asyncflow's engine core. Self-contained: imports nothing from the rest of asyncflow.

Modules: `_resolver` (sans-I/O dependency graph), `_future` (the dual future),
`_engine` (drives the resolver, executes runs), `_workers` (the thread pool),
`_portal` (the background loop for sync callers), `_states`, `_exceptions`.
"""
