"""Brokers for task workers: the interface (`_interface`) and its backends.

The rest of asyncflow imports brokers through this package only."""

from ._interface import Broker, Delivery, Lease, Outcome, RunStatus

__all__ = ("Broker", "Delivery", "Lease", "Outcome", "RunStatus")
