"""Timeline sinks: Parquet (zstd) or CSV, written batch by batch and published atomically.

Rows are appended per frame; every `flush_rows` rows a record batch is written to a hidden
temporary file beside the target. A clean close renames it to the final name; an exception
(Ctrl-C included) publishes what was written as `<stem>.partial<suffix>` instead, so the
final name never holds a truncated file and finished work is not lost.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .types import EMOTIONS, FaceBatch, Frame

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
    cols["emotion"] = [labels[k] for k in probs.argmax(1)]
    cols["confidence"] = probs.max(1).tolist()
    return cols


class TimelineSink:
    """Context manager writing timeline rows to .parquet (zstd) or .csv, chosen by suffix."""

    def __init__(self, path: str | Path, metadata: dict[str, Any] | None = None,
                 labels: tuple[str, ...] | list[str] = EMOTIONS, flush_rows: int = 20_000) -> None:
        self.path = Path(path)
        self.format = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}.get(self.path.suffix.lower())
        if self.format is None:
            raise ValueError(f"--out must end in .parquet or .csv, not {self.path.name!r}")
        self.schema = timeline_schema(labels)
        self.labels = labels
        self.metadata = dict(metadata or {})
        self.flush_rows = flush_rows
        self.errors: list[dict[str, Any]] = []
        self.rows_written = 0
        self._buf: dict[str, list] = {name: [] for name in self.schema.names}
        self._nbuf = 0
        self._tmp = self.path.with_name(f".{self.path.name}.tmp")
        self._writer: Any = None

    def __enter__(self) -> "TimelineSink":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.format == "parquet":
            self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd")
        else:
            self._writer = pacsv.CSVWriter(self._tmp, self.schema)
        return self

    def write(self, frame: Frame, faces: FaceBatch) -> None:
        """Append the rows of one frame."""
        cols = frame_columns(frame, faces, self.labels)
        for name in self.schema.names:
            self._buf[name].extend(cols[name])
        self._nbuf += len(cols["source"])
        if self._nbuf >= self.flush_rows:
            self.flush()

    def add_error(self, source: str | Path, error: str, frames_done: int = 0) -> None:
        self.errors.append({"source": str(source), "error": error, "frames_done": frames_done})

    def flush(self) -> None:
        if self._nbuf == 0:
            return
        batch = pa.RecordBatch.from_pydict(self._buf, schema=self.schema)
        self._writer.write_batch(batch)
        self.rows_written += self._nbuf
        self._buf = {name: [] for name in self.schema.names}
        self._nbuf = 0

    def __exit__(self, exc_type, exc, tb) -> None:
        final = self.path
        if exc_type is not None:
            final = self.path.with_name(f"{self.path.stem}.partial{self.path.suffix}")
            self.metadata["interrupted"] = f"{exc_type.__name__}: {exc}"
        try:
            self.flush()
            if self.format == "parquet":
                self._writer.add_key_value_metadata(
                    {"emobatch": json.dumps({**self.metadata, "errors": self.errors})})
        finally:
            self._writer.close()
        os.replace(self._tmp, final)
        self.written_path = final
        self._write_sidecars(final)

    def _write_sidecars(self, final: Path) -> None:
        """errors table (always, maybe empty) and, for CSV, the run metadata as JSON."""
        err_path = errors_path(final)
        tmp = err_path.with_name(f".{err_path.name}.tmp")
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=ERROR_FIELDS)
            w.writeheader()
            w.writerows(self.errors)
        os.replace(tmp, err_path)
        if self.format == "csv":
            meta = final.with_name(f"{final.stem}.meta.json")
            meta.write_text(json.dumps({**self.metadata, "errors": self.errors}, indent=2) + "\n")


def errors_path(timeline: Path) -> Path:
    """`results.parquet` -> `results.errors.csv`."""
    return timeline.with_name(f"{timeline.stem}.errors.csv")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The run metadata of a timeline (Parquet key-value metadata, or the CSV's .meta.json)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return json.loads(path.with_name(f"{path.stem}.meta.json").read_text())
    kv = pq.read_metadata(path).metadata or {}
    return json.loads(kv.get(b"emobatch", b"{}"))
