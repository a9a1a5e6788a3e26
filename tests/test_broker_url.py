"""open_broker: URLs, the environment variable, the default file, clear errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from asyncflow._broker import MemoryBroker, default_broker_path, open_broker
from asyncflow._broker._sqlite import SQLiteBroker
from asyncflow._broker._url import sqlite_path, user_cache_dir


def test_sqlite_urls_follow_sqlalchemy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert sqlite_path("sqlite:///rel/b.db") == tmp_path / "rel" / "b.db"
    assert sqlite_path("sqlite:////abs/b.db") == Path("/abs/b.db")
    broker = open_broker("sqlite:///b.db")
    try:
        assert isinstance(broker, SQLiteBroker)
        assert broker.path == tmp_path / "b.db"
        assert broker.url == f"sqlite:///{tmp_path}/b.db"  # the absolute form
        assert sqlite_path(broker.url) == broker.path  # round trip
    finally:
        broker.close()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_the_sqlite_file_is_private_to_the_user(tmp_path: Path) -> None:
    broker = open_broker(f"sqlite:///{tmp_path}/b.db")
    broker.close()
    assert (tmp_path / "b.db").stat().st_mode & 0o077 == 0


def test_memory_urls_name_one_broker_per_process() -> None:
    first = open_broker("memory://test-url-shared")
    assert first is open_broker("memory://test-url-shared")
    assert first is not open_broker("memory://test-url-other")
    assert isinstance(first, MemoryBroker)
    assert first.url == "memory://test-url-shared"
    assert open_broker("memory://").url == "memory://"


def test_the_environment_variable_names_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCFLOW_BROKER_URL", "memory://from-env")
    assert open_broker(None) is open_broker("memory://from-env")


def test_with_no_url_a_sqlite_file_in_the_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ASYNCFLOW_BROKER_URL", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sys, "platform", "linux")
    assert default_broker_path() == tmp_path / "cache" / "asyncflow" / "broker.db"
    broker = open_broker()
    try:
        assert isinstance(broker, SQLiteBroker)
        assert broker.path == tmp_path / "cache" / "asyncflow" / "broker.db"
    finally:
        broker.close()


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        ("linux", {}, "home/.cache/asyncflow"),
        ("linux", {"XDG_CACHE_HOME": "relative"}, "home/.cache/asyncflow"),  # invalid: ignored
        ("darwin", {}, "home/Library/Caches/asyncflow"),
        ("win32", {"LOCALAPPDATA": "{tmp}/local"}, "local/asyncflow/Cache"),
        ("win32", {}, "home/AppData/Local/asyncflow/Cache"),
    ],
)
def test_the_cache_dir_per_platform(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platform: str,
    env: dict[str, str],
    expected: str,
) -> None:
    for name in ("XDG_CACHE_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sys, "platform", platform)
    assert user_cache_dir() == tmp_path / expected


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("postgres://db/x", r"unknown broker URL 'postgres://db/x'; supported: sqlite://"),
        ("just-a-path.db", r"unknown broker URL 'just-a-path.db'"),
        ("redis://localhost:6379/0", r"Redis broker is not built yet"),
        ("rediss://host", r"Redis broker is not built yet"),
        ("sqlite://", r"names no file"),
        ("sqlite:///", r"names no file"),
        ("sqlite:///b.db?mode=ro", r"query strings"),
        ("memory://a/b", r"one word"),
    ],
)
def test_bad_urls_name_the_url_and_what_is_supported(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        open_broker(url)


def test_a_url_that_is_not_a_str() -> None:
    with pytest.raises(TypeError, match="must be a str or None"):
        open_broker(Path("x.db"))  # type: ignore[arg-type]  # on purpose
