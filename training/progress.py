"""Progress within an epoch: a bar on a terminal, a log line now and then elsewhere.

Training's epochs and PublicTest's scoring (16 TTA views at the end) take minutes each on a
CPU; without this a run says nothing until an epoch is over. Under `nohup` (no terminal) a
bar would only fill the log, so a line is logged at most every `LOG_EVERY_S` seconds instead.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from emobatch.console import console

log = logging.getLogger("training.progress")

LOG_EVERY_S = 60.0

Advance = Callable[[int], None]


@contextmanager
def steps(description: str, total: int, unit: str = "batches") -> Iterator[Advance]:
    """Yield advance(n), called after each n more of `total` steps are done."""
    if console.is_terminal:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn(unit), TimeElapsedColumn(), TimeRemainingColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task, n)
        return
    yield _LogLines(description, total, unit)


class _LogLines:
    """advance(n) that logs 'description: done/total unit, s' at most every LOG_EVERY_S."""

    def __init__(self, description: str, total: int, unit: str) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.done = 0
        self.t0 = self.last = time.monotonic()

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= LOG_EVERY_S:
            self.last = now
            log.info("%s: %d/%d %s, %.0f s", self.description, self.done, self.total,
                     self.unit, now - self.t0)
