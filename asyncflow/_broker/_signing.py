"""Signed envelopes for broker messages and results, the broker's secret, and the
payload-size limit.

Every payload and result in a broker is pickled, so anyone who can write to the broker
could otherwise run code on the workers (and in submitters, through results). Each
one is sealed: ``MAGIC + HMAC-SHA256(secret, context, data) + data``. `verify` checks
the tag with `hmac.compare_digest` before returning a single byte of `data`, so a
worker never unpickles what failed the check; it raises `BadSignature` instead. The
optional `context` (a run id, say) is bound into the tag but not stored: an envelope
copied onto another run fails its check.

The secret, in order: ``ASYNCFLOW_BROKER_SECRET`` (every process that shares the broker
sets the same value); else, for a SQLite broker, the file ``<database>.secret`` beside
it, generated on first use (32 random bytes, hex), created atomically with mode 0600
so only the user can read it; else, for ``memory://``, a random secret per process. A
backend with neither (a networked broker) needs the environment variable.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import sys
from pathlib import Path

from ._interface import Broker
from ._memory import MemoryBroker

__all__ = (
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "MAX_PAYLOAD_ENV",
    "SECRET_ENV",
    "BadSignature",
    "PayloadTooLarge",
    "broker_secret",
    "check_payload_size",
    "max_payload_bytes",
    "sign",
    "verify",
)

SECRET_ENV = "ASYNCFLOW_BROKER_SECRET"
MAX_PAYLOAD_ENV = "ASYNCFLOW_MAX_PAYLOAD_BYTES"
DEFAULT_MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
MAGIC = b"AFS1"  # format version 1: magic, 32-byte tag, data
TAG_BYTES = hashlib.sha256().digest_size
_process_secret = os.urandom(32)  # os.urandom is what secrets.token_bytes calls


class BadSignature(ValueError):
    """An envelope that is not one `sign` made under this secret (tampered, truncated,
    signed with another secret, or for another context)."""


class PayloadTooLarge(ValueError):
    """A payload or result over the broker's size limit."""


def _tag(secret: bytes, context: bytes, data: bytes) -> bytes:
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    mac.update(len(context).to_bytes(8, "big"))  # length-prefixed: no context/data ambiguity
    mac.update(context)
    mac.update(data)
    return mac.digest()


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes) or not secret:
        raise ValueError("the broker secret must be non-empty bytes")


def sign(secret: bytes, data: bytes, *, context: bytes = b"") -> bytes:
    """The envelope of `data`: what the broker stores."""
    _check_secret(secret)
    return MAGIC + _tag(secret, context, data) + data


def verify(secret: bytes, envelope: bytes, *, context: bytes = b"") -> bytes:
    """The data `envelope` seals, or `BadSignature`; nothing is deserialised."""
    _check_secret(secret)
    header = len(MAGIC) + TAG_BYTES
    if not isinstance(envelope, bytes) or len(envelope) < header or not envelope.startswith(MAGIC):
        raise BadSignature("not a signed asyncflow envelope (wrong format or truncated)")
    tag, data = envelope[len(MAGIC) : header], envelope[header:]
    if not hmac.compare_digest(tag, _tag(secret, context, data)):
        raise BadSignature(
            "signature check failed: the message was altered, or signed with another "
            f"secret (do all processes share the same {SECRET_ENV}?)"
        )
    return data


# -- the secret ----------------------------------------------------------------------


def broker_secret(broker: Broker) -> bytes:
    """The secret that signs `broker`'s messages (see the module docstring)."""
    from_env = os.environ.get(SECRET_ENV)
    if from_env is not None:
        if not from_env:
            raise ValueError(f"{SECRET_ENV} is set but empty")
        return from_env.encode()
    if isinstance(broker, MemoryBroker):
        return _process_secret
    path = getattr(broker, "path", None)
    if isinstance(path, Path):
        return secret_file(path.with_name(path.name + ".secret"))
    raise ValueError(f"set {SECRET_ENV} to the secret every process of {broker.url} shares")


def secret_file(path: Path) -> bytes:
    """The secret in `path`, created (atomically, mode 0600) if missing."""
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    # Written in full under a unique name, then linked into place: a process that
    # races us sees either no file or the whole secret, and exactly one link wins.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(os.urandom(32).hex() + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won; its secret is the one
    finally:
        os.unlink(tmp)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    with open(path, "rb") as fh:
        if sys.platform != "win32":
            mode = os.fstat(fh.fileno()).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise PermissionError(
                    f"broker secret file {path} is accessible to other users "
                    f"(mode {stat.S_IMODE(mode):o}); run `chmod 600 {path}`"
                )
        secret = fh.read().strip()
    if not secret:
        raise ValueError(f"broker secret file {path} is empty; delete it to make a new one")
    return secret


# -- the payload limit ---------------------------------------------------------------


def max_payload_bytes() -> int:
    """The limit: ``ASYNCFLOW_MAX_PAYLOAD_BYTES`` if set, else 16 MiB."""
    raw = os.environ.get(MAX_PAYLOAD_ENV)
    if raw is None or raw == "":
        return DEFAULT_MAX_PAYLOAD_BYTES
    try:
        limit = int(raw)
    except ValueError:
        raise ValueError(f"{MAX_PAYLOAD_ENV} must be an int (bytes), got {raw!r}") from None
    if limit < 1:
        raise ValueError(f"{MAX_PAYLOAD_ENV} must be >= 1, got {limit}")
    return limit


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB ({n:,} bytes)"


def check_payload_size(data: bytes, what: str, limit: int | None = None) -> None:
    """`PayloadTooLarge` if `data` is over `limit` (default `max_payload_bytes()`);
    `what` names it in the message, e.g. "the arguments of task 'mod:fn'"."""
    limit = max_payload_bytes() if limit is None else limit
    if len(data) > limit:
        raise PayloadTooLarge(
            f"{what}: {_size(len(data))} pickled, over the broker's limit of "
            f"{_size(limit)}; pass large data by reference (a path, a URL), or raise "
            f"the limit with {MAX_PAYLOAD_ENV}"
        )
