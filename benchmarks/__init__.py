"""asyncflow's benchmark suite (issue #6): `python -m benchmarks [--quick]`.

Every scenario times asyncflow and its raw baseline (ThreadPoolExecutor, asyncio,
ProcessPoolExecutor, a plain call...) in the same process run, interleaving repeats,
and reports medians, spreads and the asyncflow/baseline ratio against the issue's
targets. See benchmarks/README.md.
"""
