"""Timeline sinks: Parquet (zstd) or CSV, written batch by batch and published atomically.

A run gathers each input's rows in a RowBuffer (parts in its store); the sink appends them
as record batches of at most `flush_rows` rows to a hidden temporary file beside the target,
through the TimelineWriter registered for the target's suffix (emobatch.timeline). A clean
close renames it to the final name; an exception (Ctrl-C included) publishes what was
written as `<stem>.partial<suffix>` instead, so the final name never holds a truncated file
and finished work is not lost.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from ..atomic import atomic_path, atomic_write, publish, temp_path
from ..media.filetypes import path_text
from ..timeline import (INPUTS_SCHEMA, TimelinePaths, TimelineWriter, timeline_schema,
                        timeline_writer)
from ..types import EMOTIONS, FaceBatch, Frame

# the errors table; traceback is empty for bad inputs (InputError), set for unexpected failures
ERROR_FIELDS = ("source", "error", "frames_done", "traceback")

LANDMARKS = pa.field("landmarks", pa.list_(pa.float32(), 10))
"""A face's 5 landmarks (x0, y0, ... x4, y4): kept in the store's rows for the annotated
outputs (emobatch.batch.annotated), never published in the timeline."""


def part_schema(labels: tuple[str, ...] | list[str] = EMOTIONS) -> pa.Schema:
    """The rows of a run's store: the timeline's columns, then LANDMARKS."""
    return timeline_schema(labels).append(LANDMARKS)


def frame_columns(frame: Frame, faces: FaceBatch, labels: tuple[str, ...] | list[str] = EMOTIONS
                  ) -> dict[str, list]:
    """The store rows of one frame (part_schema), column-wise (lists; None for nulls)."""
    n = len(faces)
    src = path_text(frame.source)
    if n == 0:
        cols: dict[str, list] = {name: [None] for name in part_schema(labels).names}
        cols.update(source=[src], frame=[frame.index], t_sec=[frame.t_sec])
        return cols
    probs = faces.probs if faces.probs is not None else np.full((n, len(labels)), np.nan, np.float32)
    raw = faces.probs_raw if faces.probs_raw is not None else probs
    track = faces.track if faces.track is not None else np.full(n, -1)
    cols = {"source": [src] * n, "frame": [frame.index] * n, "t_sec": [frame.t_sec] * n,
            "face": list(range(n)), "track": [int(t) if t >= 0 else None for t in track],
            "person": [None] * n}  # given when the timeline is published (batch.people)
    for j, c in enumerate(("x1", "y1", "x2", "y2")):
        cols[c] = faces.xyxy[:, j].tolist()
    cols["det_score"] = faces.score.tolist()
    for j, name in enumerate(labels):
        cols[name] = probs[:, j].tolist()
        cols[f"{name}_raw"] = raw[:, j].tolist()
    cols["classified"] = (faces.classified.tolist() if faces.classified is not None
                          else [faces.probs is not None] * n)
    cols["emotion"] = [labels[k] for k in probs.argmax(1)]
    cols["confidence"] = probs.max(1).tolist()
    cols["landmarks"] = faces.landmarks.reshape(n, 10).tolist()
    return cols


class RowBuffer:
    """Store rows (part_schema) gathered column-wise, frame by frame, taken as one Arrow
    table."""

    def __init__(self, labels: tuple[str, ...] | list[str] = EMOTIONS) -> None:
        self.labels = labels
        self.schema = part_schema(labels)
        self._cols: dict[str, list] = {name: [] for name in self.schema.names}
        self.rows = 0

    def __len__(self) -> int:
        return self.rows

    def add(self, frame: Frame, faces: FaceBatch) -> None:
        cols = frame_columns(frame, faces, self.labels)
        for name in self.schema.names:
            self._cols[name].extend(cols[name])
        self.rows += len(cols["source"])

    def take(self) -> pa.Table:
        """The rows so far (the buffer is emptied)."""
        # a Ctrl-C/SIGTERM raised inside add() leaves some columns a frame longer: keep the
        # complete frames only (the interrupted one is not counted as done either)
        n = min(len(c) for c in self._cols.values())
        table = pa.Table.from_pydict({k: c[:n] for k, c in self._cols.items()}, schema=self.schema)
        self._cols = {name: [] for name in self.schema.names}
        self.rows = 0
        return table


class TimelineSink:
    """Context manager writing timeline tables to .parquet (zstd) or .csv, chosen by suffix.

    Rows go to a unique hidden temp file beside the target (emobatch.atomic), in row groups
    of `flush_rows` rows however small the tables written (a timeline of many photos is not
    one row group per photo); a clean exit publishes it under `path`, an exception (Ctrl-C
    included) under `TimelinePaths(path).partial` if `partial`, else nowhere (all or nothing). A
    failed write (disk full) never publishes anything.
    """

    def __init__(self, path: str | Path, metadata: dict[str, Any] | None = None,
                 labels: tuple[str, ...] | list[str] = EMOTIONS, flush_rows: int = 65_536,
                 partial: bool = True, inputs: Sequence[dict[str, Any]] | None = None) -> None:
        """flush_rows: the rows of one row group / record batch written (the last fewer).
        inputs: a row per input (`INPUTS_SCHEMA`'s fields) for the inputs table published
        beside the timeline, which the metadata names (`inputs_table`); None: no table."""
        self.path = Path(path)
        self.format = timeline_writer(self.path)
        self.labels = labels
        self.schema = timeline_schema(labels)
        self.metadata = dict(metadata or {})
        self.flush_rows = flush_rows
        self.partial = partial
        self.inputs = None if inputs is None else list(inputs)
        self.errors: list[dict[str, Any]] = []
        self._tmp = temp_path(self.path)
        self._writer: TimelineWriter | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def __enter__(self) -> "TimelineSink":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = self.format(self._tmp, self.schema)
        return self

    def write_table(self, table: pa.Table) -> None:
        """Append rows with the timeline's columns (e.g. a finished part of a run: its other
        columns are left out)."""
        self._pending.append(table.select(self.schema.names).cast(self.schema))
        self._pending_rows += table.num_rows
        if self._pending_rows >= self.flush_rows:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        """Write the gathered rows in batches of `flush_rows`; a shorter rest stays gathered
        unless `final`."""
        table = pa.concat_tables(self._pending).combine_chunks()
        keep = 0 if final else table.num_rows % self.flush_rows
        for batch in table.slice(0, table.num_rows - keep).to_batches(self.flush_rows):
            self._writer.write_batch(batch)
        self._pending = [table.slice(table.num_rows - keep)] if keep else []
        self._pending_rows = keep

    def add_error(self, source: str | Path, error: str, frames_done: int = 0,
                  traceback: str | None = None) -> None:
        self.errors.append({"source": path_text(source), "error": path_text(error), "frames_done": frames_done,
                            "traceback": traceback or ""})

    def __exit__(self, exc_type, exc, tb) -> None:
        final = self.path
        if exc_type is not None:
            if not self.partial or issubclass(exc_type, OSError):
                self._discard()
                return
            final = TimelinePaths(self.path).partial.timeline
            self.metadata["interrupted"] = f"{exc_type.__name__}: {exc}"
        try:
            if self._pending:
                self._flush(final=True)
            if self.inputs is not None:
                self.metadata["inputs_table"] = TimelinePaths(final).inputs.name
            self.metadata = _as_text({**self.metadata, "errors": self.errors})
            self._writer.close(self.metadata)
            publish(self._tmp, final)
            self._write_sidecars(final)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            if exc_type is None:
                raise
            return  # the original exception is the one to report

    def _discard(self) -> None:
        """Nothing is published: the temp file goes (closing it may fail on a full disk)."""
        try:
            self._writer.close({})
        except Exception:
            pass
        self._tmp.unlink(missing_ok=True)

    def _write_sidecars(self, final: Path) -> None:
        """The errors table (only when an input failed; an earlier run's at that name is
        removed, so it never lists what this run did not see), the inputs table and the
        metadata the format keeps beside the timeline."""
        if self.inputs is not None:
            self._write_inputs(TimelinePaths(final).inputs)
        errors = TimelinePaths(final).errors
        if not self.errors:
            if _is_errors_table(errors):  # not a timeline named q.errors.csv
                errors.unlink()
        else:
            with atomic_write(errors, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=ERROR_FIELDS)
                w.writeheader()
                w.writerows(self.errors)
        self.format.write_sidecar(final, self.metadata)


    def _write_inputs(self, path: Path) -> None:
        """The inputs table, in the timeline's format, written at once (O(inputs))."""
        table = pa.Table.from_pylist(_as_text(self.inputs), schema=INPUTS_SCHEMA)
        with atomic_path(path) as tmp:
            writer = self.format(tmp, INPUTS_SCHEMA)
            try:
                for batch in table.to_batches(self.flush_rows):
                    writer.write_batch(batch)
            finally:
                writer.close({"inputs_of": self.path.name})


def _is_errors_table(path: Path) -> bool:
    """Whether `path` is an errors table (its header is ERROR_FIELDS)."""
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            return tuple(next(csv.reader(fh), [])) == ERROR_FIELDS
    except OSError:
        return False


def _as_text(value: Any) -> Any:
    """Metadata with every string as `path_text` writes it: the inputs' paths in it match
    the timeline's `source` column, and JSON readers get no lone surrogates."""
    if isinstance(value, dict):
        return {_as_text(k): _as_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_text(v) for v in value]
    return path_text(value) if isinstance(value, str) else value
