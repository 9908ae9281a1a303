"""Long work run without blocking a GUI: a function in a worker thread, or an engine command in a
background process (batch imputation over a folder of studies is in batch.py).

Qt-free on purpose: the Slicer module polls `Job.state()` from a timer on its main thread, a console
caller calls `wait()`. Both kinds of job report (done, total, stage), cancel cooperatively and hand
back either a result or the engine's own error, so callers treat them alike.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .errors import EXIT_BAD_INPUT, EXIT_CANCELLED, Cancelled, InputError
from .progress import parse_progress_line

Progress = Callable[[int, int, str], None]  # (done, total, stage)


@dataclass(frozen=True)
class JobState:
    done: int
    total: int
    stage: str
    finished: bool


class Job:
    """Progress, cancel and outcome shared between the worker and the thread that watches it."""

    def __init__(self, stage: str = "") -> None:
        self._lock = threading.Lock()
        self._done, self._total, self._stage = 0, 0, stage
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self._result: object = None
        self._error: BaseException | None = None

    def report(self, done: int, total: int, stage: str | None = None) -> None:
        with self._lock:
            self._done, self._total = done, total
            if stage is not None:
                self._stage = stage

    def state(self) -> JobState:
        with self._lock:
            return JobState(self._done, self._total, self._stage, self._finished.is_set())

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def _finish(self, result: object = None, error: BaseException | None = None) -> None:
        self._result, self._error = result, error
        self._finished.set()

    def result(self) -> object:
        """The work's return value; re-raises its error (Cancelled included). Only once finished."""
        if not self._finished.is_set():
            raise RuntimeError("the job has not finished")
        if self._error is not None:
            raise self._error
        return self._result

    def wait(self, progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
             interval: float = 0.2) -> object:
        """Block until finished (console use), forwarding progress and a cancel request; returns `result()`."""
        while not self._finished.wait(interval):
            if cancel is not None and cancel() and not self.cancelled:
                self.cancel()
            if progress is not None:
                state = self.state()
                progress(state.done, state.total, state.stage)
        return self.result()


class ThreadJob(Job):
    """`work(job)` in a daemon thread; the work calls `job.report` and checks `job.cancelled`.

    The work must not touch the Slicer scene: MRML and Qt belong to the main thread, so inputs are
    converted before the job starts and outputs become nodes after it finishes.
    """

    def __init__(self, work: Callable[["ThreadJob"], object], stage: str = "") -> None:
        super().__init__(stage)
        self._work = work
        self._thread = threading.Thread(target=self._run, name="CollaGANImpute worker", daemon=True)

    def start(self) -> "ThreadJob":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._finish(result=self._work(self))
        except BaseException as error:  # handed to the watching thread by result()
            self._finish(error=error)

    def result(self) -> object:
        """As Job.result, except that a cancel wins even when it came after the work had ended (before
        the watcher took the result): what the user cancelled is never handed on to become nodes or files."""
        value = super().result()
        if self.cancelled:
            raise Cancelled("cancelled")
        return value


class CommandJob(Job):
    """An engine command (`python -m CollaGANImputeLib ...`) in a background process.

    Progress comes from the command's JSON progress lines (`--progress lines`). Cancel interrupts the
    process (SIGINT where there is one, so the engine's atomic writes remove their temporary files and
    the training checkpoint stays whole); it is killed if it has not stopped within `grace` seconds.
    """

    def __init__(self, args: Sequence[str], *, env: Mapping[str, str] | None = None, stage: str = "",
                 grace: float = 20.0) -> None:
        super().__init__(stage)
        self.args = [str(a) for a in args]
        self._env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
        self._grace = grace
        self.log: deque[str] = deque(maxlen=200)
        self._process: subprocess.Popen | None = None

    def start(self) -> "CommandJob":
        creation = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)  # lets Windows deliver CTRL_BREAK
        self._process = subprocess.Popen(
            self.args, env=self._env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            encoding="utf-8", errors="replace", creationflags=creation,
        )
        threading.Thread(target=self._read, name="CollaGANImpute command", daemon=True).start()
        return self

    def cancel(self) -> None:
        super().cancel()
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.CTRL_BREAK_EVENT if os.name == "nt" else signal.SIGINT)

        def kill_if_stuck() -> None:
            try:
                process.wait(self._grace)
            except subprocess.TimeoutExpired:
                process.kill()

        threading.Thread(target=kill_if_stuck, daemon=True).start()

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            line = line.rstrip()
            if not line:
                continue
            self.log.append(line)
            record = parse_progress_line(line)
            if record is not None:
                self.report(int(record["done"]), int(record["total"] or 0))
        code = self._process.wait()
        self._finish(error=self._error_for(code))

    def _error_for(self, code: int) -> BaseException | None:
        if code == 0:
            return None
        if self.cancelled or code == EXIT_CANCELLED:
            return Cancelled("cancelled; the command stopped and left no partial output")
        errors = [line.split("error: ", 1)[1] for line in self.log if "error: " in line]
        if code == EXIT_BAD_INPUT and errors:
            return InputError(errors[-1])
        tail = "\n".join(list(self.log)[-20:])
        return RuntimeError(f"'{' '.join(self.args[:4])} ...' failed with exit code {code}:\n{tail}")
