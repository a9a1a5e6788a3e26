"""Brokers for task workers: the interface (`_interface`) and its backends.

The rest of asyncflow imports brokers through this package only: `open_broker(url)`
for a broker, `sign`/`verify` with `broker_secret(broker)` for the envelopes it
stores, and `check_payload_size` (and `check_lease_seconds`) at submit."""

from ._interface import Broker, Delivery, Lease, Outcome, RunStatus
from ._memory import MemoryBroker
from ._rules import check_lease_seconds
from ._signing import (
    BadSignature,
    PayloadTooLarge,
    broker_secret,
    check_payload_size,
    max_payload_bytes,
    sign,
    verify,
)
from ._url import BROKER_URL_ENV, default_broker_path, open_broker

__all__ = (
    "BROKER_URL_ENV",
    "BadSignature",
    "Broker",
    "Delivery",
    "Lease",
    "MemoryBroker",
    "Outcome",
    "PayloadTooLarge",
    "RunStatus",
    "broker_secret",
    "check_lease_seconds",
    "check_payload_size",
    "default_broker_path",
    "max_payload_bytes",
    "open_broker",
    "sign",
    "verify",
)
