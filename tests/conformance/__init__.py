"""The conformance suite: the SPEC's semantics written once, run on every task runner."""
