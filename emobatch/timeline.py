"""The timeline: its schema, its formats (a registry by suffix: Parquet, CSV), how it is read
back, and the names of every file a run writes beside it (`TimelinePaths`).

The ground floor of the package: the sinks (emobatch.batch.sinks) write through it, the
report and the CLI read through it, and the run's folder is named here too, so that no two
places can disagree about where a run's files are.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .atomic import fit_name, write_text
from .types import EMOTIONS


@dataclass(frozen=True)
class TimelinePaths:
    """Every file a run writes beside its timeline `--out`, named in one place.

    Built once per run (`TimelinePaths(out)`) and passed down. `partial` is the interrupted
    run's timeline, with sidecars of its own; `run_dir` the run's folder (its progress, the
    base of --resume).
    """

    timeline: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "timeline", Path(self.timeline))

    def _sibling(self, suffix: str) -> Path:
        return self.timeline.with_name(f"{self.timeline.stem}{suffix}")

    @property
    def errors(self) -> Path:
        """`results.parquet` -> `results.errors.csv`: the inputs that failed."""
        return self._sibling(".errors.csv")

    @property
    def meta(self) -> Path:
        """`results.csv` -> `results.meta.json`: the run metadata a CSV cannot hold."""
        return self._sibling(".meta.json")

    @property
    def report(self) -> Path:
        """`results.parquet` -> `results.report.html`: the report's default name."""
        return self._sibling(".report.html")

    @property
    def inputs(self) -> Path:
        """`results.parquet` -> `results.inputs.parquet`: a row per input (what it gave, how
        it ended), in the timeline's format; never in the timeline's footer, which must stay
        small however many inputs a run has."""
        return self._sibling(f".inputs{self.timeline.suffix}")

    @property
    def partial(self) -> "TimelinePaths":
        """`results.parquet` -> `results.partial.parquet`: what an interrupted run publishes."""
        return TimelinePaths(self._sibling(f".partial{self.timeline.suffix}"))

    @property
    def run_dir(self) -> Path:
        """`results.parquet` -> `.results.parquet.emobatch/`: the run's progress (its store)."""
        return self.timeline.with_name(fit_name(".", self.timeline.name, ".emobatch"))

    @property
    def published(self) -> tuple[Path, Path, Path, Path]:
        """The timeline and its sidecars: what one publication writes."""
        return self.timeline, self.errors, self.meta, self.inputs

    @property
    def written(self) -> tuple[Path, ...]:
        """Every file a run may publish beside `--out`: the timeline's, then the partial's."""
        return (*self.published, *self.partial.published)


NULLABLE_COLUMNS = {"face": "Int32", "track": "Int64", "person": "string",
                    "classified": "boolean"}
"""Columns read as pandas' nullable types: wherever one is null, pandas would read the
integers as floats and the booleans as objects (True/None, which `df[df.classified]` and
`~df.classified` refuse), so their dtype would depend on the data."""


def timeline_schema(labels: tuple[str, ...] | list[str] = EMOTIONS) -> pa.Schema:
    """One row per face per frame; a frame without faces has one row with null face fields."""
    fields = [
        pa.field("source", pa.string()), pa.field("frame", pa.int64()),
        pa.field("t_sec", pa.float64()), pa.field("face", pa.int32()),
        pa.field("track", pa.int64()), pa.field("person", pa.string()),
        pa.field("x1", pa.float32()), pa.field("y1", pa.float32()),
        pa.field("x2", pa.float32()), pa.field("y2", pa.float32()),
        pa.field("det_score", pa.float32()),
        *[pa.field(name, pa.float32()) for name in labels],
        pa.field("emotion", pa.string()), pa.field("confidence", pa.float32()),
        *[pa.field(f"{name}_raw", pa.float32()) for name in labels],
        pa.field("classified", pa.bool_()),
    ]
    return pa.schema(fields)


INPUTS_SCHEMA = pa.schema([
    pa.field("source", pa.string()), pa.field("kind", pa.string()),
    pa.field("frames", pa.int64()), pa.field("faces", pa.int64()),
    pa.field("seconds", pa.float64()), pa.field("error", pa.string()),
    pa.field("annotated", pa.string()), pa.field("resumed_from", pa.int64()),
    pa.field("traceback", pa.string()), pa.field("changed", pa.bool_()),
    pa.field("reused", pa.bool_()), pa.field("restarted", pa.bool_()),
])
"""The inputs table (`TimelinePaths.inputs`): a row per input, the fields of
`emobatch.batch.one_input.SourceResult`."""


class TimelineWriter(Protocol):
    """One timeline file being written in one format (register_timeline_format): record
    batches in, then closed; and how the format keeps the run metadata and is read back."""

    def __init__(self, path: Path, schema: pa.Schema) -> None: ...

    def write_batch(self, batch: pa.RecordBatch) -> None: ...

    def close(self, metadata: dict[str, Any]) -> None:
        """Finish the file, with the run metadata inside it where the format holds any."""

    @staticmethod
    def write_sidecar(final: Path, metadata: dict[str, Any]) -> None:
        """Beside the published file: the run metadata the file itself cannot hold."""

    @staticmethod
    def read_metadata(path: Path) -> dict[str, Any]: ...

    @staticmethod
    def read(path: Path) -> Any:
        """The timeline as a pandas DataFrame."""

    @staticmethod
    def columns(path: Path) -> list[str]:
        """The file's column names, without reading its rows."""

    @staticmethod
    def read_arrow(path: Path, schema: pa.Schema) -> pa.Table:
        """A table written in this format, with `schema`'s types (nulls as nulls)."""


TIMELINE_WRITERS: dict[str, type[TimelineWriter]] = {}
"""Lower-case suffix -> the timeline format written and read under it."""


def register_timeline_format(*suffixes: str) -> Callable[[type], type]:
    """Class decorator: the TimelineWriter of files ending in `suffixes`."""
    def deco(cls: type) -> type:
        for suffix in suffixes:
            TIMELINE_WRITERS[suffix] = cls
        return cls
    return deco


@register_timeline_format(".parquet", ".pq")
class ParquetTimeline:
    """Parquet (zstd); the run metadata as JSON under the key-value metadata's 'emobatch'."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._writer = pq.ParquetWriter(path, schema, compression="zstd")

    def write_batch(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def close(self, metadata: dict[str, Any]) -> None:
        try:
            self._writer.add_key_value_metadata({"emobatch": json.dumps(metadata)})
        finally:
            self._writer.close()

    @staticmethod
    def write_sidecar(final: Path, metadata: dict[str, Any]) -> None:
        pass

    @staticmethod
    def read_metadata(path: Path) -> dict[str, Any]:
        kv = pq.read_metadata(path).metadata or {}
        return json.loads(kv.get(b"emobatch", b"{}"))

    @staticmethod
    def read(path: Path) -> Any:
        import pandas as pd

        return pd.read_parquet(path)

    @staticmethod
    def columns(path: Path) -> list[str]:
        return pq.read_schema(path).names

    @staticmethod
    def read_arrow(path: Path, schema: pa.Schema) -> pa.Table:
        return pq.read_table(path, schema=schema)


@register_timeline_format(".csv")
class CsvTimeline:
    """CSV with a header row; the run metadata in `<stem>.meta.json` beside it."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._writer = pacsv.CSVWriter(path, schema)

    def write_batch(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def close(self, metadata: dict[str, Any]) -> None:
        self._writer.close()

    @staticmethod
    def write_sidecar(final: Path, metadata: dict[str, Any]) -> None:
        write_text(TimelinePaths(final).meta, json.dumps(metadata, indent=2) + "\n")

    @staticmethod
    def read_metadata(path: Path) -> dict[str, Any]:
        return json.loads(TimelinePaths(path).meta.read_text())

    @staticmethod
    def read(path: Path) -> Any:
        import pandas as pd

        return pd.read_csv(path)

    @staticmethod
    def columns(path: Path) -> list[str]:
        with open(path, newline="") as fh:
            return next(csv.reader(fh), [])

    @staticmethod
    def read_arrow(path: Path, schema: pa.Schema) -> pa.Table:
        types = pacsv.ConvertOptions(column_types=schema, strings_can_be_null=True)
        return pacsv.read_csv(path, convert_options=types)


def timeline_writer(path: str | Path) -> type[TimelineWriter]:
    """The format of a timeline to write, by its suffix; ValueError for an unknown one."""
    writer = TIMELINE_WRITERS.get(Path(path).suffix.lower())
    if writer is None:
        raise ValueError(f"--out must end in .parquet or .csv, not {Path(path).name!r}")
    return writer


def timeline_reader(path: str | Path) -> type[TimelineWriter]:
    # a timeline under any other name is read as Parquet, the default format
    return TIMELINE_WRITERS.get(Path(path).suffix.lower(), ParquetTimeline)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The run metadata of a timeline (Parquet key-value metadata, or the CSV's .meta.json),
    with its inputs table's rows as `results` and what they imply: `annotated` (source ->
    annotated file), `changed_inputs` and `resume` (what a resumed run reused, continued
    and redid; None if nothing)."""
    meta = timeline_reader(path).read_metadata(Path(path))
    table = meta.get("inputs_table") if isinstance(meta, dict) else None
    if isinstance(table, str) and Path(path).with_name(table).is_file():  # not copied along:
        meta |= input_records(read_inputs(Path(path).with_name(table)))  # the rest stands
    return meta


def read_inputs(path: str | Path) -> list[dict[str, Any]]:
    """The rows of an inputs table (`TimelinePaths.inputs`), as dicts."""
    return timeline_reader(path).read_arrow(Path(path), INPUTS_SCHEMA).to_pylist()


def input_records(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The metadata keys made from the inputs' rows (see read_metadata)."""
    resume = {"reused": [r["source"] for r in results if r["reused"]],
              "continued": {r["source"]: r["resumed_from"] for r in results
                            if r["resumed_from"] is not None and not r["reused"]},
              "redone": [r["source"] for r in results if r["restarted"] or r["changed"]]}
    return {"results": results,
            "annotated": {r["source"]: r["annotated"] for r in results if r["annotated"]},
            "changed_inputs": [r["source"] for r in results if r["changed"]],
            "resume": resume if any(resume.values()) else None}


def read_timeline(path: str | Path):
    """Read a timeline (.parquet or .csv) into a pandas DataFrame; run metadata in df.attrs.

    face and track come back as nullable integers (Int32, Int64; <NA> where a frame has no
    face or a face no track), classified as nullable boolean (<NA> where a frame has no
    face), whatever the format and the data: not as floats or objects.
    """
    df = timeline_reader(path).read(Path(path))
    df = df.astype({c: t for c, t in NULLABLE_COLUMNS.items() if c in df.columns})
    try:
        df.attrs["emobatch"] = read_metadata(path)
    except (OSError, ValueError):
        pass
    return df
