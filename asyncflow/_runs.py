"""State hooks and retry conditions, in asyncflow's form and in Prefect's.

A hook is `hook(task, state)` (asyncflow) or `hook(task, task_run, state)` (Prefect;
for flows `hook(flow, flow_run, state)`); a `retry_condition_fn` is `fn(task,
exception)` (asyncflow) or `fn(task, task_run, state)` (Prefect). Which form a
callable has is decided once, at decoration, from its signature: if it can be called
with two positional arguments it gets asyncflow's form (so no existing hook changes
meaning), else with three Prefect's; anything else is a `TypeError` naming the task
(or flow) and the callable. A callable whose signature cannot be read (some builtins)
gets asyncflow's form.

Prefect's middle argument is a run record (`TaskRun` / `FlowRun`, public in
`asyncflow.runs`): a frozen snapshot of the run's id, name, parameters, state, start
and end times, attempt count and tags, built only when a Prefect-form callable asks for it.
A Prefect-form retry condition gets a Failed state whose `.result()` raises the
attempt's exception (`.result(raise_on_failure=False)` returns it), as Prefect's
`state.result()` does in its retry handlers.

Kinds of hooks, and the final states that call them: `on_completion` (COMPLETED),
`on_failure` (every other final state, asyncflow's rule), `on_cancellation`
(CANCELLED), `on_crashed` (CRASHED), and `on_running` (each attempt that starts). Each
kind is a `Hooks` list, also a decorator: `@my_task.on_completion`.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ._core import Run, State, StateType

if TYPE_CHECKING:  # imported when a record is built: `import asyncflow` stays lean
    import uuid
    from datetime import datetime

    from ._run_records import FlowRun, TaskRun

__all__ = (
    "HOOK_KINDS",
    "RUN_BOOK",
    "HookSet",
    "Hooks",
    "attempt_failed_state",
    "flow_run_record",
    "new_run_id",
    "takes_run_record",
    "task_run_record",
)

logger = logging.getLogger("asyncflow")
F = TypeVar("F", bound=Callable[..., Any])

HOOK_KINDS = ("on_completion", "on_failure", "on_running", "on_cancellation", "on_crashed")


def _callable_label(fn: Any) -> str:
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__name__", None)
    return name if isinstance(name, str) else repr(fn)


def _binds(signature: inspect.Signature, count: int) -> bool:
    try:
        signature.bind(*range(count))
    except TypeError:
        return False
    return True


def takes_run_record(fn: Any, what: str, own_form: str, prefect_form: str) -> bool:
    """True if `fn` has Prefect's three-argument form, False for asyncflow's two; a
    TypeError naming `what` and `fn` if it fits neither (callers name the task)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # no signature to read: assume asyncflow's form
        return False
    if _binds(signature, 2):
        return False
    if _binds(signature, 3):
        return True
    bare = signature.replace(
        parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
        return_annotation=signature.empty,
    )
    raise TypeError(
        f"{what} {_callable_label(fn)}{bare} must take asyncflow's "
        f"{own_form} or Prefect's {prefect_form}"
    )


def _when(timestamp: float | None) -> datetime | None:
    from datetime import datetime, timezone

    return None if timestamp is None else datetime.fromtimestamp(timestamp, timezone.utc)


def new_run_id() -> uuid.UUID:
    import uuid

    return uuid.uuid4()


class Hooks(list[Callable[..., object]]):
    """The hooks of one kind of a task or flow: a list, and a decorator that adds one
    (`@my_task.on_failure`), checked as the decorator's options are."""

    def __init__(self, owner: HookSet, kind: str, hooks: Iterable[Callable[..., object]]) -> None:
        super().__init__()
        self._owner = owner
        self.kind = kind
        for hook in hooks:
            self.register(hook)

    def register(self, hook: Callable[..., object]) -> None:
        if not callable(hook):
            raise TypeError(
                f"{self.kind} must contain callables, got {type(hook).__name__}: {hook!r}"
            )
        self._owner.classify(hook, self.kind)
        self.append(hook)

    def __call__(self, hook: F) -> F:
        """Register `hook` (used as a decorator); returns it unchanged."""
        try:
            self.register(hook)
        except TypeError as exc:
            raise TypeError(f"{self._owner.label}: {exc}") from None
        self._owner.changed()
        return hook


class HookSet:
    """Every state hook of one task or flow (`kind`: "task" or "flow"), and how to
    call them. `on_change` is called when a hook is added by decorator."""

    def __init__(self, kind: str, given: Mapping[str, Any]) -> None:
        self.kind = kind
        self.label = kind  # "task 'load'" once the owner is named: how logs name it
        self._prefect: dict[int, bool] = {}
        self.on_change: Callable[[], None] | None = None
        self.lists: dict[str, Hooks] = {}
        for name in HOOK_KINDS:
            hooks = given.get(name)
            if hooks is None:
                hooks = []
            elif callable(hooks) and not isinstance(hooks, list):
                hooks = [hooks]
            if not isinstance(hooks, (list, tuple)):
                raise TypeError(f"{name} must be a list of callables, got {hooks!r}")
            self.lists[name] = Hooks(self, name, hooks)

    def classify(self, hook: Callable[..., object], kind: str) -> None:
        own = f"({self.kind}, state)"
        prefect = f"({self.kind}, {self.kind}_run, state)"
        self._prefect[id(hook)] = takes_run_record(hook, f"{kind} hook", own, prefect)

    def changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def any(self, *kinds: str) -> bool:
        return any(self.lists[k] for k in (kinds or HOOK_KINDS))

    def final_kinds(self, state: State) -> tuple[str, ...]:
        if state.type is StateType.COMPLETED:
            return ("on_completion",)
        if state.type is StateType.CANCELLED:
            return ("on_cancellation", "on_failure")
        if state.type is StateType.CRASHED:
            return ("on_crashed", "on_failure")
        return ("on_failure",)

    def call(
        self, kinds: Iterable[str], owner: Any, state: State, record: Callable[[], Any]
    ) -> None:
        """Call the hooks of `kinds` with `owner` and `state` (and the run record
        `record()` for Prefect-form ones, built once); one that raises is logged."""
        built: list[Any] = []
        for kind in kinds:
            for hook in self.lists[kind]:
                try:
                    if self._prefect.get(id(hook), False):
                        if not built:
                            built.append(record())
                        hook(owner, built[0], state)
                    else:
                        hook(owner, state)
                except Exception:
                    logger.exception("%s hook %r of %s raised", kind, hook, self.label)


class _FailedAttempt(State):
    """The Failed state of one attempt, for Prefect-form retry conditions: `.result()`
    raises the attempt's exception, as Prefect's `state.result()` does."""

    __slots__ = ("error",)
    error: BaseException

    def result(self, raise_on_failure: bool = True) -> BaseException:
        if raise_on_failure:
            raise self.error
        return self.error


def attempt_failed_state(error: BaseException, attempt: int) -> State:
    state = _FailedAttempt(StateType.FAILED, message=f"{type(error).__name__}: {error}")
    state.attempts = attempt
    state.error = error
    return state


class _RunBook:
    """The id and start time of each run of a task with hooks, from its first Running
    state to its final one (runs have slots: this is their side table)."""

    def __init__(self) -> None:
        self._runs: dict[Run, tuple[uuid.UUID, float]] = {}

    def started(self, run: Run, state: State) -> None:
        if run not in self._runs:
            self._runs[run] = (new_run_id(), state.timestamp)

    def entry(self, run: Run) -> tuple[uuid.UUID, float | None]:
        found = self._runs.get(run)
        return found if found is not None else (new_run_id(), None)

    def forget(self, run: Run) -> None:
        self._runs.pop(run, None)


RUN_BOOK = _RunBook()


def task_run_record(run: Run, state: State, final: bool) -> TaskRun:
    from ._run_records import TaskRun

    run_id, started = RUN_BOOK.entry(run)
    call: Any = run.call
    try:
        parameters = dict(call.resolved_parameters())
    except Exception:  # an upstream that failed (a NotReady run): its futures as they are
        parameters = dict(getattr(call, "parameters", {}))
    return TaskRun(
        id=run_id,
        name=f"{run.name}-{run_id.hex[:8]}",
        task_name=run.name,
        parameters=parameters,
        state=state,
        start_time=_when(started),
        end_time=_when(state.timestamp) if final else None,
        # A run that lived elsewhere (a task worker) counted its attempts there.
        run_count=max(run.attempt, state.attempts),
        tags=sorted(getattr(call, "tags", ())),
    )


def flow_run_record(
    name: str,
    run_id: uuid.UUID,
    parameters: Mapping[str, Any],
    state: State,
    started: float,
    final: bool,
    run_count: int = 1,
    tags: frozenset[str] = frozenset(),
) -> FlowRun:
    from ._run_records import FlowRun

    return FlowRun(
        id=run_id,
        name=f"{name}-{run_id.hex[:8]}",
        flow_name=name,
        parameters=dict(parameters),
        state=state,
        start_time=_when(started),
        end_time=_when(state.timestamp) if final else None,
        run_count=run_count,
        tags=sorted(tags),
    )
