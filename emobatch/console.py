"""What the command prints: one rich console on stderr, plain lines (`say`) and the
progress bars of a run (`RichProgress`)."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn)


class _StderrConsole(Console):
    """rich's Console on stderr; a reader of it gone (`2>&1 | head -1`) silences it instead
    of exiting 1 (rich's way): the exit status says what the run did, not who listened."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        # else Python reports the pipe again when it flushes stderr at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())


console = _StderrConsole(stderr=True)


def say(text: str, style: str | None = None) -> None:
    """One plain line on stderr, never truncated or wrapped (users grep and copy the paths
    in it), in `style` (e.g. 'red'). Never read as rich markup: a path may hold '[/]'."""
    console.print(text, style=style, soft_wrap=True, highlight=False, markup=False)


class RichProgress:
    """Progress callback: an overall bar (files) and a per-file bar (frames, frames/s), then
    one of the annotated outputs drawn."""

    def __init__(self, quiet: bool = False, every: int = 1) -> None:
        self.every = every
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                            console=console, disable=quiet, transient=False)
        self.overall = self.file_task = None
        self.started = False
        self.frames = 0
        self.t0 = time.perf_counter()

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        getattr(self, f"_on_{event}")(info)

    def _on_start(self, info: dict) -> None:
        self.bar.start()
        self.started = True
        self.overall = self.bar.add_task("all files", total=len(info["files"]), rate="")

    def _on_source(self, info: dict) -> None:
        n = info["info"].n_frames if info.get("info") is not None else None
        total = None if n is None else -(-n // self.every)
        if self.file_task is not None:
            self.bar.remove_task(self.file_task)
        self.file_task = self.bar.add_task(Path(info["source"]).name[-40:], total=total, rate="")
        self.t_file = time.perf_counter()

    def _on_frame(self, info: dict) -> None:
        self.frames += 1
        fps = info["frames"] / max(time.perf_counter() - self.t_file, 1e-9)
        self.bar.update(self.file_task, completed=info["frames"], rate=f"{fps:5.1f} frames/s")

    def _on_done(self, info: dict) -> None:
        if not info.get("streamed"):  # finished earlier (resume) or in another process
            self.frames += info["result"].frames
        fps = self.frames / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.update(self.overall, advance=1, rate=f"{fps:5.1f} frames/s")

    def _on_annotate(self, info: dict) -> None:
        """The annotated outputs are drawn now, after every input (their tags need the
        person ids): a bar of their own."""
        if self.file_task is not None:
            self.bar.remove_task(self.file_task)
        self.file_task = self.bar.add_task("annotated outputs", total=info["files"], rate="")

    def _on_annotated(self, info: dict) -> None:
        self.bar.update(self.file_task, advance=1)

    def stop(self) -> None:
        if self.started:  # stopping a display never shown prints an empty line
            self.bar.stop()
            self.started = False
