"""Run an output's write jobs on a thread of their own, so encoding overlaps inference.

The counterpart of prefetch: there a thread decodes ahead of the pipeline, here one draws
and encodes behind it. OpenCV and libx264 release the GIL while they work, so an annotated
video's drawing and encoding run beside the detector and classifier on another core.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable

_END = None  # the thread's last job


class EncodeThread:
    """Jobs run one at a time, in the order submitted, on one daemon thread; at most `depth`
    wait (submit() blocks beyond that), so memory stays flat when the thread falls behind.

    A job's exception is re-raised, the same object, by the next submit() or close(): the
    jobs submitted after the failing one are dropped (a caller running them itself would
    not have reached them); jobs submitted after that run as usual. A job's arguments must
    not change once submitted.
    """

    def __init__(self, name: str, depth: int = 8) -> None:
        self._jobs: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._ended = False
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is _END:
                    return
                if self._error is None and not self._stop.is_set():
                    fn, args = job
                    fn(*args)
            except BaseException as e:  # the caller's, at its next call
                self._error = e
            finally:
                self._jobs.task_done()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue fn(*args); first raises the error of a job that failed since the last call."""
        self._raise()
        self._jobs.put((fn, args))

    def close(self) -> None:
        """Run every job submitted, end the thread, then raise a failed job's error.
        Idempotent."""
        self._end()
        self._raise()

    def abort(self) -> None:
        """Drop the jobs still waiting, let the running one finish and end the thread; a
        failed job's error is dropped too (the caller is already handling another)."""
        self._stop.set()
        self._end()
        self._error = None

    def _end(self) -> None:
        if not self._ended:
            self._jobs.put(_END)
            self._ended = True
        self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            self._jobs.join()  # the thread drops what was submitted after the failure
            error, self._error = self._error, None
            raise error
