"""A broker with its secret: the one object submitters, watchers and workers use.

`acquire(url)` opens the broker once per URL per process (SQLite connections, the
in-process `memory://` instance) and resolves its secret (`_broker.broker_secret`);
every user (a started runner, a watcher thread, a worker) holds it until `release`,
and the last one closes it, so a process that used many brokers keeps no file open.
`seal` / `unseal` sign and check every message and result, bound to its run id, so
an envelope copied onto another run fails its check too.
"""

from __future__ import annotations

import os
import threading

from .._broker import (
    BROKER_URL_ENV,
    Broker,
    broker_secret,
    check_payload_size,
    open_broker,
    sign,
    verify,
)

__all__ = ("Channel", "acquire", "release", "retain")


class Channel:
    """`broker` and the secret its envelopes are sealed with."""

    __slots__ = ("broker", "keys", "secret", "url", "users")

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.url = broker.url
        self.secret = broker_secret(broker)
        self.users = 0
        self.keys: set[str | None] = set()

    def seal(self, run_id: str, data: bytes, what: str, limit: int | None) -> bytes:
        """The envelope of `data` for run `run_id`; `PayloadTooLarge` (naming `what`)
        over the size limit."""
        check_payload_size(data, what, limit)
        return sign(self.secret, data, context=run_id.encode())

    def unseal(self, run_id: str, envelope: bytes) -> bytes:
        """The data, or `BadSignature`: never unpickle what fails here."""
        return verify(self.secret, envelope, context=run_id.encode())


_channels: dict[str | None, Channel] = {}
_lock = threading.Lock()


def acquire(url: str | None) -> Channel:
    """The process's channel to the broker at `url` (None: `ASYNCFLOW_BROKER_URL`,
    read now, else the default file), held until `release`."""
    if url is None:
        url = os.environ.get(BROKER_URL_ENV) or None
    with _lock:
        found = _channels.get(url)
        if found is None:
            found = Channel(open_broker(url))
            found = _channels.setdefault(found.url, found)  # the same broker, named anew
            _channels[url] = found
            found.keys.update((url, found.url))
        found.users += 1
        return found


def retain(ch: Channel) -> None:
    """One more user of a channel that is held already."""
    with _lock:
        assert ch.users > 0, "retain() of a released channel"
        ch.users += 1


def release(ch: Channel) -> None:
    """A user is done with `ch`; the last one closes its broker."""
    with _lock:
        ch.users -= 1
        if ch.users:
            return
        for key in ch.keys:
            if _channels.get(key) is ch:
                del _channels[key]
    ch.broker.close()


def _after_fork_in_child() -> None:
    _channels.clear()  # a SQLite connection must not cross a fork: the child opens its own


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
