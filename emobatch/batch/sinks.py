"""Timeline sinks: Parquet (zstd) or CSV, written batch by batch and published atomically.

Rows are appended per frame; every `flush_rows` rows a record batch is written to a hidden
temporary file beside the target. A clean close renames it to the final name; an exception
(Ctrl-C included) publishes what was written as `<stem>.partial<suffix>` instead, so the
final name never holds a truncated file and finished work is not lost.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..atomic import atomic_write, publish, temp_path, write_text
from ..types import EMOTIONS, FaceBatch, Frame

ERROR_FIELDS = ("source", "error", "frames_done")


def timeline_schema(labels: tuple[str, ...] | list[str] = EMOTIONS) -> pa.Schema:
    """One row per face per frame; a frame without faces has one row with null face fields."""
    fields = [
        pa.field("source", pa.string()), pa.field("frame", pa.int64()),
        pa.field("t_sec", pa.float64()), pa.field("face", pa.int32()),
        pa.field("track", pa.int64()),
        pa.field("x1", pa.float32()), pa.field("y1", pa.float32()),
        pa.field("x2", pa.float32()), pa.field("y2", pa.float32()),
        pa.field("det_score", pa.float32()),
        *[pa.field(name, pa.float32()) for name in labels],
        pa.field("emotion", pa.string()), pa.field("confidence", pa.float32()),
        *[pa.field(f"{name}_raw", pa.float32()) for name in labels],
        pa.field("classified", pa.bool_()),
    ]
    return pa.schema(fields)


def frame_columns(frame: Frame, faces: FaceBatch, labels: tuple[str, ...] | list[str] = EMOTIONS
                  ) -> dict[str, list]:
    """The timeline rows of one frame, column-wise (lists; None for nulls)."""
    n = len(faces)
    src = str(frame.source)
    if n == 0:
        cols: dict[str, list] = {name: [None] for name in timeline_schema(labels).names}
        cols.update(source=[src], frame=[frame.index], t_sec=[frame.t_sec])
        return cols
    probs = faces.probs if faces.probs is not None else np.full((n, len(labels)), np.nan, np.float32)
    raw = faces.probs_raw if faces.probs_raw is not None else probs
    track = faces.track if faces.track is not None else np.full(n, -1)
    cols = {"source": [src] * n, "frame": [frame.index] * n, "t_sec": [frame.t_sec] * n,
            "face": list(range(n)), "track": [int(t) if t >= 0 else None for t in track]}
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
    return cols


class RowBuffer:
    """Timeline rows gathered column-wise, frame by frame, taken as one Arrow table."""

    def __init__(self, labels: tuple[str, ...] | list[str] = EMOTIONS) -> None:
        self.labels = labels
        self.schema = timeline_schema(labels)
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
    """Context manager writing timeline rows to .parquet (zstd) or .csv, chosen by suffix.

    Rows go to a unique hidden temp file beside the target (emobatch.atomic); a clean exit
    publishes it under `path`, an exception (Ctrl-C included) under `partial_path(path)`.
    """

    def __init__(self, path: str | Path, metadata: dict[str, Any] | None = None,
                 labels: tuple[str, ...] | list[str] = EMOTIONS, flush_rows: int = 20_000) -> None:
        self.path = Path(path)
        self.format = timeline_format(self.path)
        self.labels = labels
        self.schema = timeline_schema(labels)
        self.metadata = dict(metadata or {})
        self.flush_rows = flush_rows
        self.errors: list[dict[str, Any]] = []
        self.rows_written = 0
        self._buf = RowBuffer(labels)
        self._tmp = temp_path(self.path)
        self._writer: Any = None
        self.written_path: Path | None = None

    def __enter__(self) -> "TimelineSink":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.format == "parquet":
            self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd")
        else:
            self._writer = pacsv.CSVWriter(self._tmp, self.schema)
        return self

    def write(self, frame: Frame, faces: FaceBatch) -> None:
        """Append the rows of one frame."""
        self._buf.add(frame, faces)
        if len(self._buf) >= self.flush_rows:
            self.flush()

    def write_table(self, table: pa.Table) -> None:
        """Append rows already in the timeline schema (e.g. a finished part of a run)."""
        self.flush()
        for batch in table.cast(self.schema).to_batches(self.flush_rows):
            self._writer.write_batch(batch)
        self.rows_written += table.num_rows

    def add_error(self, source: str | Path, error: str, frames_done: int = 0) -> None:
        self.errors.append({"source": str(source), "error": error, "frames_done": frames_done})

    def flush(self) -> None:
        if len(self._buf) == 0:
            return
        n = len(self._buf)
        for batch in self._buf.take().to_batches():
            self._writer.write_batch(batch)
        self.rows_written += n

    def __exit__(self, exc_type, exc, tb) -> None:
        final = self.path
        if exc_type is not None:
            final = partial_path(self.path)
            self.metadata["interrupted"] = f"{exc_type.__name__}: {exc}"
        try:
            try:
                self.flush()
                if self.format == "parquet":
                    self._writer.add_key_value_metadata(
                        {"emobatch": json.dumps({**self.metadata, "errors": self.errors})})
            finally:
                self._writer.close()
            publish(self._tmp, final)
            self._write_sidecars(final)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            if exc_type is None:
                raise
            return  # the original exception is the one to report
        self.written_path = final

    def _write_sidecars(self, final: Path) -> None:
        """errors table (always, maybe empty) and, for CSV, the run metadata as JSON."""
        with atomic_write(errors_path(final), "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=ERROR_FIELDS)
            w.writeheader()
            w.writerows(self.errors)
        if self.format == "csv":
            write_text(meta_path(final), json.dumps({**self.metadata, "errors": self.errors},
                                                    indent=2) + "\n")


TIMELINE_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def timeline_format(path: Path) -> str:
    """'parquet' or 'csv' from the suffix; ValueError for anything else."""
    fmt = TIMELINE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"--out must end in .parquet or .csv, not {Path(path).name!r}")
    return fmt


def partial_path(timeline: Path) -> Path:
    """`results.parquet` -> `results.partial.parquet` (what an interrupted run publishes)."""
    return timeline.with_name(f"{timeline.stem}.partial{timeline.suffix}")


def meta_path(timeline: Path) -> Path:
    """`results.csv` -> `results.meta.json` (a CSV timeline's run metadata)."""
    return timeline.with_name(f"{timeline.stem}.meta.json")


def errors_path(timeline: Path) -> Path:
    """`results.parquet` -> `results.errors.csv`."""
    return timeline.with_name(f"{timeline.stem}.errors.csv")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The run metadata of a timeline (Parquet key-value metadata, or the CSV's .meta.json)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return json.loads(meta_path(path).read_text())
    kv = pq.read_metadata(path).metadata or {}
    return json.loads(kv.get(b"emobatch", b"{}"))


def read_timeline(path: str | Path):
    """Read a timeline (.parquet or .csv) into a pandas DataFrame; run metadata in df.attrs."""
    import pandas as pd

    df = pd.read_parquet(path) if not str(path).lower().endswith(".csv") else pd.read_csv(path)
    try:
        df.attrs["emobatch"] = read_metadata(path)
    except (OSError, ValueError):
        pass
    return df
