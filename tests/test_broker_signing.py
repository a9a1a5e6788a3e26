"""Signed envelopes, the broker secret and the payload limit."""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from asyncflow._broker import (
    BadSignature,
    MemoryBroker,
    PayloadTooLarge,
    broker_secret,
    check_payload_size,
    max_payload_bytes,
    sign,
    verify,
)
from asyncflow._broker._signing import SECRET_ENV, secret_file
from asyncflow._broker._sqlite import SQLiteBroker

SECRET = b"s" * 32


class _CreatesAFile:
    """Unpickling this creates a file: proof that something was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def test_a_signed_envelope_round_trips() -> None:
    data = pickle.dumps({"x": 1})
    envelope = sign(SECRET, data)
    assert envelope != data
    assert verify(SECRET, envelope) == data
    assert verify(SECRET, sign(SECRET, b"")) == b""


def test_the_context_is_bound_into_the_signature() -> None:
    envelope = sign(SECRET, b"result", context=b"run-1")
    assert verify(SECRET, envelope, context=b"run-1") == b"result"
    with pytest.raises(BadSignature):
        verify(SECRET, envelope, context=b"run-2")  # copied onto another run
    with pytest.raises(BadSignature):
        verify(SECRET, envelope)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda e: e[:-1] + bytes([e[-1] ^ 1]),  # a data bit
        lambda e: e[:10] + bytes([e[10] ^ 1]) + e[11:],  # a tag bit
        lambda e: e + b"x",  # appended
        lambda e: e[:20],  # truncated inside the tag
        lambda e: b"",
        lambda e: b"XXXX" + e[4:],  # the magic
    ],
)
def test_a_tampered_envelope_is_rejected_without_unpickling(
    tmp_path: Path, tamper: Callable[[bytes], bytes]
) -> None:
    marker = tmp_path / "unpickled"
    envelope = sign(SECRET, pickle.dumps(_CreatesAFile(str(marker))))
    bad = tamper(envelope)
    with pytest.raises(BadSignature):
        pickle.loads(verify(SECRET, bad))
    assert not marker.exists()


def test_another_secret_fails_the_check_and_says_which_variable() -> None:
    with pytest.raises(BadSignature, match=SECRET_ENV):
        verify(b"other secret", sign(SECRET, b"data"))


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        sign(b"", b"data")


def test_the_environment_secret_comes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, "from the environment")
    broker = SQLiteBroker(tmp_path / "b.db")
    try:
        assert broker_secret(broker) == b"from the environment"
        assert broker_secret(MemoryBroker()) == b"from the environment"
    finally:
        broker.close()
    assert not (tmp_path / "b.db.secret").exists()
    monkeypatch.setenv(SECRET_ENV, "")
    with pytest.raises(ValueError, match="set but empty"):
        broker_secret(MemoryBroker())


def test_memory_brokers_share_a_per_process_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    secret = broker_secret(MemoryBroker("a"))
    assert len(secret) >= 32
    assert broker_secret(MemoryBroker("b")) == secret


def test_a_broker_with_no_secret_of_its_own_needs_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)

    class Networked:
        url = "redis://somewhere"

    with pytest.raises(ValueError, match=f"set {SECRET_ENV}.*redis://somewhere"):
        broker_secret(Networked())  # type: ignore[arg-type]  # a stand-in backend


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_sqlite_generates_a_private_secret_file_beside_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    broker = SQLiteBroker(tmp_path / "b.db")
    try:
        secret = broker_secret(broker)
        path = tmp_path / "b.db.secret"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes().strip() == secret
        assert len(secret) == 64  # 32 random bytes, hex
        assert broker_secret(broker) == secret  # read back, not regenerated
        assert sorted(p.name for p in tmp_path.iterdir() if "secret" in p.name) == [path.name]
        path.chmod(0o644)
        with pytest.raises(PermissionError, match="chmod 600"):
            broker_secret(broker)
    finally:
        broker.close()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.secret"
    path.touch(mode=0o600)
    with pytest.raises(ValueError, match="is empty"):
        secret_file(path)


@pytest.mark.timeout(30)
def test_racing_processes_agree_on_one_generated_secret(tmp_path: Path) -> None:
    path = tmp_path / "b.db.secret"
    script = (
        "import sys; from pathlib import Path; "
        "from asyncflow._broker._signing import secret_file; "
        "sys.stdout.write(secret_file(Path(sys.argv[1])).decode())"
    )
    env = {k: v for k, v in os.environ.items() if k != SECRET_ENV}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, env=env, text=True
        )
        for _ in range(4)
    ]
    outputs = [proc.communicate(timeout=20)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    assert len(set(outputs)) == 1
    assert outputs[0] == path.read_text().strip()


def test_racing_threads_agree_on_one_generated_secret(tmp_path: Path) -> None:
    path = tmp_path / "t.secret"
    barrier = threading.Barrier(4)
    found: list[bytes] = []

    def read() -> None:
        barrier.wait(timeout=10)
        found.append(secret_file(path))

    threads = [threading.Thread(target=read, name=f"secret-{i}") for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(found) == 4
    assert len(set(found)) == 1


# -- the payload limit ------------------------------------------------------------------


def test_the_payload_limit_names_the_size_the_limit_and_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ASYNCFLOW_MAX_PAYLOAD_BYTES", raising=False)
    assert max_payload_bytes() == 16 * 1024 * 1024
    check_payload_size(b"x" * 100, "task 'm:f'", limit=100)  # at the limit: fine
    with pytest.raises(PayloadTooLarge, match=r"task 'm:f': 0.0 MiB \(101 bytes\).* \(100 bytes"):
        check_payload_size(b"x" * 101, "task 'm:f'", limit=100)
    with pytest.raises(ValueError, match="ASYNCFLOW_MAX_PAYLOAD_BYTES"):
        check_payload_size(b"x" * (16 * 1024 * 1024 + 1), "the arguments of task 'm:f'")


def test_the_payload_limit_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCFLOW_MAX_PAYLOAD_BYTES", "10")
    assert max_payload_bytes() == 10
    with pytest.raises(PayloadTooLarge, match="11 bytes"):
        check_payload_size(b"x" * 11, "task 'm:f'")
    for bad, match in (("ten", "must be an int"), ("0", "must be >= 1")):
        monkeypatch.setenv("ASYNCFLOW_MAX_PAYLOAD_BYTES", bad)
        with pytest.raises(ValueError, match=match):
            max_payload_bytes()
