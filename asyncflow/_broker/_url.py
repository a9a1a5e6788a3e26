"""`open_broker(url)`: a broker from its URL, and where the default broker lives.

URLs:

- ``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db``: a SQLite file,
  following SQLAlchemy's convention (three slashes then a relative path, resolved
  against the current directory when the broker opens; a fourth slash starts an
  absolute path; ``sqlite:///C:/path.db`` is absolute on Windows). The opened broker's
  ``url`` is always the absolute form, so it can be handed to a worker started
  elsewhere.
- ``memory://`` or ``memory://name``: one in-process `MemoryBroker` per name per process.
- ``redis://``, ``rediss://``: not built yet (a later issue); a clear error says so.
- ``None``: ``ASYNCFLOW_BROKER_URL`` if set, else the SQLite file ``broker.db`` in the
  user's cache directory (`default_broker_path`).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from ._interface import Broker
from ._memory import MemoryBroker

__all__ = ("BROKER_URL_ENV", "default_broker_path", "open_broker", "sqlite_path")

BROKER_URL_ENV = "ASYNCFLOW_BROKER_URL"
SUPPORTED = "sqlite:///relative.db, sqlite:////absolute.db, memory://[name]"

_memory_brokers: dict[str, MemoryBroker] = {}
_memory_lock = threading.Lock()


def user_cache_dir() -> Path:
    """The user's cache directory for asyncflow, by the rules platformdirs follows:
    ``%LOCALAPPDATA%\\asyncflow\\Cache`` on Windows, ``~/Library/Caches/asyncflow`` on
    macOS, ``$XDG_CACHE_HOME/asyncflow`` (default ``~/.cache/asyncflow``) elsewhere."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "asyncflow" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "asyncflow"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "asyncflow"


def default_broker_path() -> Path:
    return user_cache_dir() / "broker.db"


def sqlite_path(url: str) -> Path:
    """The file a ``sqlite://`` URL names, absolute (see the module docstring)."""
    rest = url[len("sqlite://") :]
    if "?" in rest or "#" in rest:
        raise ValueError(f"broker URL {url!r}: query strings and fragments are not supported")
    if not rest.startswith("/") or rest == "/":
        raise ValueError(
            f"broker URL {url!r} names no file: an in-memory SQLite database cannot be "
            f"shared with workers (use memory:// for one process); supported: {SUPPORTED}"
        )
    # "sqlite:///x" -> "x" (relative), "sqlite:////x" -> "/x" (absolute).
    return Path(os.path.abspath(rest[1:]))


def open_broker(url: str | None = None) -> Broker:
    """The broker `url` names (see the module docstring); a `ValueError` names a URL
    it cannot open and the schemes it supports."""
    if url is None:
        url = os.environ.get(BROKER_URL_ENV) or None
    if url is None:
        from ._sqlite import SQLiteBroker  # sqlite3 loads only when used

        path = default_broker_path()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return SQLiteBroker(path)
    if not isinstance(url, str):
        raise TypeError(f"broker URL must be a str or None, got {type(url).__name__}: {url!r}")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if sep and scheme == "memory":
        return _memory_broker(rest, url)
    if sep and scheme == "sqlite":
        from ._sqlite import SQLiteBroker

        return SQLiteBroker(sqlite_path(url))
    if sep and scheme in ("redis", "rediss"):
        raise ValueError(
            f"broker URL {url!r}: a Redis broker is not built yet (a later issue); "
            f"supported: {SUPPORTED}"
        )
    raise ValueError(f"unknown broker URL {url!r}; supported: {SUPPORTED}")


def _memory_broker(name: str, url: str) -> MemoryBroker:
    if "/" in name or "?" in name or "#" in name:
        raise ValueError(f"broker URL {url!r}: a memory:// name is one word ({SUPPORTED})")
    with _memory_lock:
        broker = _memory_brokers.get(name)
        if broker is None:
            broker = _memory_brokers[name] = MemoryBroker(name)
        return broker
