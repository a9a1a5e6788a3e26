"""Watching runs in the broker: one thread per broker per process reports outcomes.

Every run a submitter sent (and every future rebuilt from a run id) is *watched*: the
watcher thread follows the broker's feed of runs as they become final
(`finished_since`), reports the outcome of each watched one to its run
(`Run.report_remote`: the final state the worker computed, retries and timeouts
included), and waits for the broker to change (`broker.wait`). A wake-up costs the
runs that finished since the last one, not one look per run in flight.

No outcome is missed: a run is watched *before* it is enqueued, and a thread that
starts takes its cursor (`finished_since(None)`) before it returns from `watch`, so
the feed position is before the run can finish. A future rebuilt from a run id is the
exception (its run may have finished before the cursor): it is watched with
`check=True`, and the thread asks `outcomes` for it once. The thread also marks runs
`Running` once a worker holds them (the broker says LEASED): it asks for the status
of the oldest runs not seen running yet, at most `STATUS_BATCH` per round, since
workers claim oldest first.

The thread starts when a run is watched and ends as soon as none is, so a process
that stops submitting keeps no thread (and its cursor goes with it: the next thread
takes a fresh one, instead of reading all that finished meanwhile). It never
raises a `TimeoutError` at anyone: a run's future waits as long as its run is not
final in the broker (a lost worker's run is handed to another one, or dead-lettered
after its deliveries, which is an outcome too).

The feed lists every run of the broker, this process's or not; a submitter with few
runs in flight beside busy neighbours reads their outcomes too (the price of one
query per wake-up instead of one per run).

Outcomes are checked before they are unpickled: a result whose seal fails ends the
run CRASHED, and its bytes are never loaded.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from typing import Any

from .._broker import BadSignature, Outcome, RunStatus
from .._core import Run, SerializationError, State, StateType, TaskCancelled, TaskCrashed
from ._channel import Channel, release, retain
from ._wire import decode_outcome

__all__ = ("Watcher", "watcher")

logger = logging.getLogger("asyncflow")

WAIT_SECONDS = 0.1  # longest wait between two looks at the broker
STATUS_BATCH = 32  # runs asked "has a worker taken you?" per round
FEED_BATCH = 1000  # outcomes per `finished_since` call
_RUNNING = State(StateType.RUNNING)


class Watcher:
    """Reports the outcomes of the runs watched on one channel (see the module doc)."""

    def __init__(self, ch: Channel) -> None:
        self.channel = ch
        self._lock = threading.Lock()
        self._runs: dict[str, list[Run]] = {}  # run id -> its runs here (rebuilt futures)
        self._queued: dict[str, None] = {}  # watched runs not seen taken, oldest first
        self._check: dict[str, None] = {}  # rebuilt runs: ask `outcomes` once
        self._cursor: int | None = None  # the feed position of the running thread
        self._thread: threading.Thread | None = None

    def watch(self, run_id: str, run: Run, *, check: bool = False) -> None:
        """Watch `run` (call it before the run is enqueued; `check` for a run that
        may be final already: a future rebuilt from its id)."""
        with self._lock:
            if self._thread is None:  # the cursor, before the caller enqueues
                self._cursor = self.channel.broker.finished_since(None)[1]
            self._runs.setdefault(run_id, []).append(run)
            self._queued[run_id] = None
            if check:
                self._check[run_id] = None
            if self._thread is None:
                retain(self.channel)  # held while the thread runs (released at its end)
                self._thread = threading.Thread(
                    target=self._serve, name="asyncflow-broker-watch", daemon=True
                )
                self._thread.start()

    def unwatch(self, run_id: str, run: Run) -> bool:
        """Stop watching `run`; True if it was still watched (no outcome reported)."""
        with self._lock:
            runs = self._runs.get(run_id, [])
            if run not in runs:
                return False
            runs.remove(run)
            if not runs:
                del self._runs[run_id]
                self._queued.pop(run_id, None)
                self._check.pop(run_id, None)
            return True

    def withdraw(self, run_id: str, run: Run) -> None:
        """`run` (of `run_id`) is about to be stopped while it looks queued: cancel it
        in the broker, which answers atomically what it found. The status poll and
        the feed may not have seen it yet, so a run a worker took is reported Running
        now (the stop treats it as executing), and a run that ended is reported with
        its outcome (it ran: it does not end Cancelled). Still queued: it is cancelled
        there and no longer watched (the stop ends it here; its release need not
        cancel it again). Not enqueued yet: the stop ends it, `start_run` withdraws it."""
        broker = self.channel.broker
        found = broker.cancel(run_id)
        if found is RunStatus.QUEUED:
            self.unwatch(run_id, run)
        elif found is RunStatus.LEASED:
            self._taken(run_id)
        elif found is not None and found.is_final:
            self._report_all(broker.outcomes([run_id]))

    def _taken(self, run_id: str) -> None:
        """A worker holds `run_id`: its runs here are Running."""
        with self._lock:
            self._queued.pop(run_id, None)
            runs = list(self._runs.get(run_id, ()))
        for run in runs:
            run.report_remote(_RUNNING)

    def _serve(self) -> None:
        broker = self.channel.broker
        while True:
            with self._lock:
                if not self._runs:  # nothing left to watch: the next `watch` starts a thread
                    self._thread = self._cursor = None
                    break
            try:
                self._look()
            except Exception:  # the broker failed (a locked file?): try again soon
                logger.exception("watching runs in broker %s failed", self.channel.url)
            with self._lock:
                if not self._runs:
                    continue
            broker.wait(WAIT_SECONDS)
        release(self.channel)

    def _look(self) -> None:
        broker = self.channel.broker
        with self._lock:
            check = list(self._check)
        if check:
            self._report_all(broker.outcomes(check))
            with self._lock:
                for run_id in check:
                    self._check.pop(run_id, None)
        while True:
            found, self._cursor = broker.finished_since(self._cursor, limit=FEED_BATCH)
            self._report_all(found)
            if len(found) < FEED_BATCH:
                break
        with self._lock:
            queued = list(itertools.islice(self._queued, STATUS_BATCH))
        for run_id in queued:
            status = broker.status(run_id)
            if status is RunStatus.QUEUED or status is None:  # None: not enqueued yet
                continue
            if status is RunStatus.LEASED:
                self._taken(run_id)
            else:  # final: the feed reports it
                with self._lock:
                    self._queued.pop(run_id, None)

    def _report_all(self, outcomes: list[Outcome]) -> None:
        """Report the outcomes of the watched runs among `outcomes`."""
        for outcome in outcomes:
            with self._lock:
                runs = self._runs.pop(outcome.run_id, None)
                if runs is None:  # another process's run, or reported already
                    continue
                self._queued.pop(outcome.run_id, None)
                self._check.pop(outcome.run_id, None)
            for run in runs:
                self.report(run, outcome)

    def report(self, run: Run, outcome: Outcome) -> None:
        """End `run` as the broker's `outcome` says (its result checked, then loaded)."""
        try:
            state, value, error = self._final_state(run, outcome)
        except BaseException as exc:  # a reducer may raise anything: the run still ends
            logger.exception("reading the outcome of task %r failed", run.name)
            state, value, error = _failed(run, exc)
        run.report_remote(state, value, error)

    def _final_state(self, run: Run, outcome: Outcome) -> tuple[State, Any, BaseException | None]:
        name, run_id = run.name, outcome.run_id
        if outcome.status is RunStatus.CANCELLED:
            err: BaseException = TaskCancelled(
                f"task {name!r} (run {run_id}) was cancelled: {outcome.reason}"
            )
            return State(StateType.CANCELLED, message=str(err)), None, err
        if outcome.status is RunStatus.DEAD:
            err = TaskCrashed(
                f"task {name!r} (run {run_id}) crashed after {outcome.deliveries} "
                f"deliveries to task workers: {outcome.reason}"
            )
            return State(StateType.CRASHED, message=str(err)), None, err
        assert outcome.result is not None
        try:
            data = self.channel.unseal(run_id, outcome.result)
        except BadSignature as exc:
            err = TaskCrashed(
                f"task {name!r} (run {run_id}): its result failed its signature check "
                f"and was not unpickled: {exc}"
            )
            return State(StateType.CRASHED, message=str(err)), None, err
        try:
            decoded = decode_outcome(data, name)
        except Exception as exc:
            err = SerializationError(
                f"task {name!r}: its result could not be unpickled here: "
                f"{type(exc).__name__}: {exc}"
            )
            return State(StateType.FAILED, message=str(err)), None, err
        return decoded.state, decoded.value, decoded.error


def _failed(run: Run, exc: BaseException) -> tuple[State, None, BaseException]:
    err = TaskCrashed(f"task {run.name!r}: its outcome could not be read: {exc!r}")
    return State(StateType.CRASHED, message=str(err)), None, err


_watchers: dict[str, Watcher] = {}
_watchers_lock = threading.Lock()


def watcher(ch: Channel) -> Watcher:
    """The process's watcher of `ch` (the caller holds `ch`)."""
    with _watchers_lock:
        found = _watchers.get(ch.url)
        if found is None or found.channel is not ch:  # first, or `ch` was reopened
            found = _watchers[ch.url] = Watcher(ch)
        return found


def _after_fork_in_child() -> None:
    _watchers.clear()  # the parent's watcher threads do not exist here


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
