"""A task runner over any `concurrent.futures.Executor` (docs/writing-a-runner.md).

Sync runs go to the executor (threads or processes) one attempt at a time; the core decides
what each outcome means. Async runs execute on the loop. Queued attempts can be stopped."""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable
from typing import Any

from asyncflow.task_runners import Run, TaskRunner  # Run: what runners are handed


class ExecutorTaskRunner(TaskRunner):
    """Runs sync tasks in the executor `make_executor()` returns (one per `with`)."""

    def __init__(self, make_executor: Callable[[], cf.Executor]) -> None:
        super().__init__()
        self.make_executor = make_executor
        self._executor: cf.Executor  # set while the runner is started
        self._attempts: dict[Run, cf.Future[Any]] = {}  # run -> its executor future
        self._broken = False  # a worker died: a broken pool is not waited for

    def duplicate(self) -> ExecutorTaskRunner:
        return type(self)(self.make_executor)

    def _start_resources(self) -> None:
        self._executor = self.make_executor()

    def _stop_resources(self) -> None:  # after Ctrl-C or a crash, do not wait
        self._executor.shutdown(wait=not (self.abandoned or self._broken), cancel_futures=True)

    def start_run(self, run: Run) -> None:
        if run.is_async:
            return run.start_on_loop()
        self._send(run)

    def _send(self, run: Run) -> None:
        if not run.begin_attempt():  # stopped while it waited for a retry
            return
        local = isinstance(self._executor, cf.ThreadPoolExecutor)
        fn, args, kwargs = run.call.parts(by_name=not local)
        if local:  # same process: in the submitter's context, so tasks it submits
            fn, args = run.context.run, (fn, *args)  # come to this runner too
        try:
            future = self._attempts[run] = self._executor.submit(fn, *args, **kwargs)
        except Exception as exc:  # a broken process pool, say
            self._retry(run, run.report_crash(exc))
            return
        future.add_done_callback(lambda f: self._finished(run, f))

    def _finished(self, run: Run, future: cf.Future[Any]) -> None:
        if future.cancelled():  # `stop_running` did it: the core knows why
            run.report_crash(cf.CancelledError())
        elif isinstance(error := future.exception(), cf.BrokenExecutor):  # a worker died
            self._broken = True
            self._retry(run, run.report_crash(error))
        elif error is not None:
            self._retry(run, run.report_error(error))
        else:
            run.report_value(future.result())

    def _retry(self, run: Run, delay: float | None) -> None:
        if delay is not None:  # the core wants another attempt after `delay` s
            run.retry_later(delay, self._send)

    def can_stop(self, run: Run) -> bool:  # only while it waits in the executor's queue
        future = self._attempts.get(run)
        return future is not None and not (future.running() or future.done())

    def stop_running(self, run: Run) -> None:  # too late if it started meanwhile: then
        if future := self._attempts.get(run):  # its outcome ends the run as the core says
            future.cancel()

    def release_run(self, run: Run) -> None:
        self._attempts.pop(run, None)
        super().release_run(run)
