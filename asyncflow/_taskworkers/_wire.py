"""What travels through the broker, and how: task keys, calls and outcomes.

A *task key* is `"module:qualname"`: a worker finds the task by importing the module
and walking the qualified name, so only tasks defined at module level of an
importable module can be sent (not in `__main__`, not inside a function); anything
else fails at submit with an error naming the task.

A *call* is the task key, the options the submitter changed with `with_options`
(retries, delays, timeout: they apply on the worker; hooks and concurrency limits stay
with the submitter), the arguments, futures already resolved, and the lease the
submitter asked for (`WorkerTaskRunner(lease_seconds=...)`; None: the worker's
`--lease`). Calls of version 1 (no lease) still decode, so workers of this version
serve submitters of the one before. An *outcome* is the
final state the run reached on the worker (type, name, message, attempts) with its
value or its exception (and that exception's traceback text).

Both are pickled (the C pickler, cloudpickle only where it cannot: see
`_process_worker.dumps`) and then sealed with HMAC-SHA256 (`_broker._signing`). The
receiving side checks the seal *before* it unpickles anything: unpickling runs code,
so bytes that anyone but a holder of the secret could have written are never loaded.
"""

from __future__ import annotations

import pickle
import sys
from typing import Any

from .._core import SerializationError, State, StateType, TaskFuture
from .._runners._process_pool import decode_error
from .._runners._process_worker import dumps, encode_error

__all__ = (
    "Call",
    "Outcome",
    "decode_call",
    "decode_outcome",
    "encode_call",
    "encode_future",
    "encode_outcome",
    "failed_state",
    "shipped_options",
    "task_key",
)

CALL_TAG = "asyncflow-call/2"
CALL_TAG_V1 = "asyncflow-call/1"  # (tag, key, name, options, parameters): no lease
OUTCOME_TAG = "asyncflow-outcome/1"


def task_key(task: Any) -> str:
    """`"module:qualname"` of a module-level task; a clear error for any other."""
    fn = task.fn
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None) or ""
    why = None
    if not module or module == "__main__":
        why = "it is defined in __main__, which a worker process cannot import"
    elif "<locals>" in qualname or "<lambda>" in qualname:
        why = "it is defined inside a function (or is a lambda), so a worker cannot import it"
    elif getattr(find_task(module, qualname, imported_only=True), "fn", None) is not fn:
        why = f"{module}.{qualname} is not this task"
    if why is not None:
        raise SerializationError(
            f"task {task.name!r} cannot be sent to task workers: {why}; workers find a "
            "task by its module and qualified name, so define it at module level in an "
            "importable module"
        )
    return f"{module}:{qualname}"


def find_task(module: str, qualname: str, *, imported_only: bool = False) -> Any:
    """The object at `module:qualname` (importing the module unless `imported_only`)."""
    if imported_only:
        obj: Any = sys.modules.get(module)
    else:
        import importlib

        obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj


# Options a `with_options` copy may change that apply where the task executes.
_SHIPPED = ("name", "retries", "retry_delay_seconds", "timeout_seconds")


def shipped_options(task: Any, original: Any) -> dict[str, Any] | None:
    """The execution options of `task` (a `with_options` copy of the module-level
    `original`) that differ from it; None when `task` is the original."""
    if task is original:
        return None
    options = {name: getattr(task, name) for name in _SHIPPED}
    policy = task.run_options.retry
    condition = getattr(policy, "condition", None)
    options["retry_jitter_factor"] = getattr(policy, "jitter", None)
    # Task wraps the condition as partial(fn, task): ship the user's own function.
    options["retry_condition_fn"] = getattr(condition, "func", condition)
    return options


class Call:
    """A decoded call: what a worker executes."""

    __slots__ = ("key", "lease_seconds", "name", "options", "parameters")

    def __init__(
        self,
        key: str,
        name: str,
        options: dict[str, Any] | None,
        parameters: dict[str, Any],
        lease_seconds: float | None = None,
    ) -> None:
        self.key = key
        self.name = name
        self.options = options
        self.parameters = parameters  # bound by name, futures resolved
        self.lease_seconds = lease_seconds  # None: the worker's default


def encode_call(call: Call) -> bytes:
    """The pickled call; a `SerializationError` naming the task and the argument that
    cannot be pickled."""
    try:
        return dumps(
            (CALL_TAG, call.key, call.name, call.options, call.parameters, call.lease_seconds)
        )
    except Exception as exc:
        for name, value in call.parameters.items():
            try:
                dumps(value)
            except Exception:
                raise SerializationError(
                    f"task {call.name!r}: argument {name!r}, of type "
                    f"{type(value).__qualname__}, cannot be pickled to send it to a task "
                    f"worker: {type(exc).__name__}: {exc}"
                ) from exc
        raise SerializationError(
            f"task {call.name!r}: its call cannot be pickled to send it to a task worker "
            f"(an option such as retry_condition_fn?): {type(exc).__name__}: {exc}"
        ) from exc


def decode_call(data: bytes) -> Call:
    """Unpickle a call whose seal was checked already."""
    message = pickle.loads(data)
    tag = message[0] if isinstance(message, tuple) and message else None
    if tag == CALL_TAG_V1:
        message = (*message, None)
    elif tag != CALL_TAG:
        raise ValueError(f"not an asyncflow call message: {tag!r}")
    _, key, name, options, parameters, lease_seconds = message
    return Call(key, name, options, parameters, lease_seconds)


class Outcome:
    """A run's final state on the worker, with its value or exception."""

    __slots__ = ("error", "state", "value")

    def __init__(self, state: State, value: Any = None, error: BaseException | None = None):
        self.state = state
        self.value = value
        self.error = error


_OK, _ERROR = 0, 1


def encode_future(fut: TaskFuture[Any]) -> bytes:
    """`encode_outcome` of a final future."""
    state = fut.state
    if state.is_completed():
        return encode_outcome(fut.name, state, fut.result(timeout=0))
    return encode_outcome(fut.name, state, error=fut.result(timeout=0, raise_on_failure=False))


def encode_outcome(
    name: str, state: State, value: Any = None, error: BaseException | None = None
) -> bytes:
    """A final state, pickled with its value or error; a result that cannot be
    pickled becomes a failure naming the task and the value's type."""
    head = (OUTCOME_TAG, state.type.name, state.name, state.message, state.attempts)
    if error is None:
        try:
            return dumps((*head, _OK, dumps(value)))
        except Exception as exc:
            err = SerializationError(
                f"task {name!r}: its result, of type {type(value).__qualname__}, cannot "
                f"be pickled to return it from the task worker: {type(exc).__name__}: {exc}"
            )
            return encode_outcome(name, failed_state(err, state.attempts), error=err)
    return dumps((*head, _ERROR, encode_error(error)))


def failed_state(error: BaseException, attempts: int = 0) -> State:
    """FAILED, with the message asyncflow gives every failure."""
    return State(StateType.FAILED, message=f"{type(error).__name__}: {error}", attempts=attempts)


def decode_outcome(data: bytes, name: str) -> Outcome:
    """Unpickle an outcome whose seal was checked already (`name`: for messages)."""
    tag, type_name, state_name, message, attempts, kind, body = pickle.loads(data)
    if tag != OUTCOME_TAG:
        raise ValueError(f"not an asyncflow outcome message: {tag!r}")
    state = State(StateType[type_name], state_name, message, attempts=attempts)
    if kind == _OK:
        return Outcome(state, pickle.loads(body))
    return Outcome(state, None, decode_error(body, name, "here"))
