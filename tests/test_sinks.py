import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from emobatch import timeline
from emobatch.batch.sinks import RowBuffer, TimelineSink
from emobatch.timeline import (CsvTimeline, ParquetTimeline, TimelinePaths, read_metadata,
                               read_timeline, timeline_schema)
from emobatch.types import EMOTIONS, FaceBatch, Frame


def _faces(n: int) -> FaceBatch:
    rng = np.random.default_rng(n)
    p = rng.random((n, 7)).astype(np.float32)
    p /= p.sum(1, keepdims=True)
    xy = np.tile(np.array([[10, 20, 50, 70]], np.float32), (n, 1))
    return FaceBatch(xy, np.full(n, 0.99, np.float32), np.zeros((n, 5, 2), np.float32), probs=p,
                     probs_raw=p)


def _rows(*frames: tuple[Frame, FaceBatch]):
    """The timeline table of some frames, as a run's store holds it."""
    rows = RowBuffer()
    for frame, faces in frames:
        rows.add(frame, faces)
    return rows.take()


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_rows_per_face_and_empty_frames(tmp_path, suffix):
    out = tmp_path / f"r{suffix}"
    with TimelineSink(out, {"k": "v"}, flush_rows=2) as sink:
        sink.write_table(_rows(
            (Frame(np.zeros((4, 4, 3), np.uint8), Path("v.mp4"), 0, 0.0), _faces(2)),
            (Frame(np.zeros((4, 4, 3), np.uint8), Path("v.mp4"), 1, 1001 / 30000), _faces(0))))
        sink.write_table(_rows((Frame(np.zeros((4, 4, 3), np.uint8), Path("a.jpg")), _faces(3))))
        sink.add_error("bad.mp4", "zero-byte file")
    df = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert len(df) == 6
    assert list(df.columns) == timeline_schema().names
    assert df["face"].isna().sum() == 1 and df.loc[2, "frame"] == 1
    assert abs(df.loc[2, "t_sec"] - 1001 / 30000) < 1e-12
    assert pd.isna(df.loc[3, "t_sec"])  # stills have no time
    faces = df.dropna(subset=["face"])
    np.testing.assert_allclose(faces[list(EMOTIONS)].sum(axis=1), 1, atol=1e-5)
    assert (faces["emotion"] == faces[list(EMOTIONS)].idxmax(axis=1)).all()
    errs = pd.read_csv(TimelinePaths(out).errors, keep_default_na=False)
    assert errs.to_dict("records") == [{"source": "bad.mp4", "error": "zero-byte file",
                                        "frames_done": 0, "traceback": ""}]
    meta = read_metadata(out)
    assert meta["k"] == "v" and meta["errors"][0]["source"] == "bad.mp4"
    assert not list(tmp_path.glob(".*tmp"))


def test_parquet_is_zstd(tmp_path):
    out = tmp_path / "r.parquet"
    with TimelineSink(out) as sink:
        sink.write_table(_rows((Frame(np.zeros((4, 4, 3), np.uint8), Path("a.jpg")), _faces(1))))
    assert pq.ParquetFile(out).metadata.row_group(0).column(0).compression == "ZSTD"


def test_crash_never_leaves_final_name(tmp_path):
    out = tmp_path / "r.parquet"
    with pytest.raises(KeyboardInterrupt):
        with TimelineSink(out, flush_rows=1) as sink:
            sink.write_table(_rows((Frame(np.zeros((4, 4, 3), np.uint8), Path("a.jpg")), _faces(2))))
            assert not out.exists()
            raise KeyboardInterrupt
    assert not out.exists()
    partial = tmp_path / "r.partial.parquet"
    assert len(pd.read_parquet(partial)) == 2  # finished rows are kept, readable
    assert "KeyboardInterrupt" in read_metadata(partial)["interrupted"]


def test_bad_suffix():
    with pytest.raises(ValueError, match=".parquet or .csv"):
        TimelineSink("r.txt")


def test_formats_by_suffix():
    assert timeline.TIMELINE_WRITERS == {".parquet": ParquetTimeline, ".pq": ParquetTimeline,
                                      ".csv": CsvTimeline}
    assert TimelineSink("r.PQ").format is ParquetTimeline


def test_a_registered_format_is_written_and_read(tmp_path, monkeypatch):
    monkeypatch.setattr(timeline, "TIMELINE_WRITERS", dict(timeline.TIMELINE_WRITERS))

    @timeline.register_timeline_format(".jsonl")
    class JsonLines:
        def __init__(self, path, schema):
            self.fh = open(path, "w")

        def write_batch(self, batch):
            for row in batch.to_pylist():
                self.fh.write(json.dumps(row) + "\n")

        def close(self, metadata):
            self.fh.close()

        @staticmethod
        def write_sidecar(final, metadata):
            final.with_suffix(".meta").write_text(json.dumps(metadata))

        @staticmethod
        def read_metadata(path):
            return json.loads(path.with_suffix(".meta").read_text())

        @staticmethod
        def read(path):
            return pd.read_json(path, lines=True)

    out = tmp_path / "r.jsonl"
    with TimelineSink(out, {"k": "v"}) as sink:
        sink.write_table(_rows((Frame(np.zeros((4, 4, 3), np.uint8), Path("a.jpg")), _faces(2))))
    df = read_timeline(out)
    assert len(df) == 2 and list(df.columns) == timeline_schema().names
    assert df.attrs["emobatch"]["k"] == "v"
    assert not TimelinePaths(out).errors.exists()  # a clean run writes no errors table


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_track_is_a_nullable_integer_in_the_file_and_when_read(tmp_path, suffix):
    out = tmp_path / f"r{suffix}"
    faces = _faces(2).with_(track=np.array([3, -1]))  # the second face is untracked
    with TimelineSink(out) as sink:
        sink.write_table(_rows((Frame(np.zeros((4, 4, 3), np.uint8), Path("v.mp4"), 0, 0.0),
                                faces),
                               (Frame(np.zeros((4, 4, 3), np.uint8), Path("v.mp4"), 1, 0.04),
                                _faces(0))))
    if suffix == ".parquet":
        assert str(pq.read_schema(out).field("track").type) == "int64"
    else:
        track = [line.split(",")[4] for line in out.read_text().splitlines()[1:]]
        assert track == ["3", "", ""]  # integers, not 3.0
    df = read_timeline(out)
    assert str(df["track"].dtype) == "Int64" and str(df["face"].dtype) == "Int32"
    assert df["track"].iloc[0] == 3 and df["track"].isna().tolist() == [False, True, True]
    assert df["face"].tolist()[:2] == [0, 1] and pd.isna(df["face"].iloc[2])


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
@pytest.mark.parametrize("no_face", [False, True])
def test_classified_is_a_nullable_boolean_whatever_the_data(tmp_path, suffix, no_face):
    """Item 23: with a no-face row, classified came back as object (True/None), so
    df[df.classified] raised ValueError and ~df.classified TypeError; else as bool."""
    out = tmp_path / f"r{suffix}"
    faces = _faces(2).with_(classified=np.array([True, False]))
    frames = [(Frame(np.zeros((4, 4, 3), np.uint8), Path("v.mp4"), 0, 0.0), faces)]
    if no_face:
        frames.append((Frame(np.zeros((4, 4, 3), np.uint8), Path("v.mp4"), 1, 0.04), _faces(0)))
    with TimelineSink(out) as sink:
        sink.write_table(_rows(*frames))
    df = read_timeline(out)
    assert str(df["classified"].dtype) == "boolean"
    assert df[df["classified"]]["face"].tolist() == [0]
    assert (~df["classified"]).tolist()[:2] == [False, True]
    assert df["classified"].isna().tolist() == [False, False] + [True] * no_face


def test_errors_table_only_when_an_input_failed_and_a_stale_one_removed(tmp_path):
    out = tmp_path / "r.parquet"
    TimelinePaths(out).errors.write_text("source,error,frames_done,traceback\nold.mp4,gone,0,\n")
    with TimelineSink(out) as sink:  # a clean run at the same name
        sink.write_table(_rows((Frame(np.zeros((4, 4, 3), np.uint8), Path("a.jpg")), _faces(1))))
    assert out.is_file() and not TimelinePaths(out).errors.exists()  # old.mp4 is not this run's failure
    with TimelineSink(out) as sink:
        sink.add_error("bad.jpg", "zero-byte file")
    assert pd.read_csv(TimelinePaths(out).errors)["source"].tolist() == ["bad.jpg"]


@pytest.mark.parametrize("flush_rows,groups", [(65_536, 1), (120, 3)])
def test_row_groups_follow_size_not_tables(tmp_path, flush_rows, groups):
    out = tmp_path / "r.parquet"
    one = _rows((Frame(np.zeros((4, 4, 3), np.uint8), Path("a.jpg")), _faces(1)))
    with TimelineSink(out, flush_rows=flush_rows) as sink:
        for _ in range(300):  # 300 one-row tables, as a run of 300 photos writes them
            sink.write_table(one)
    f = pq.ParquetFile(out)
    assert f.num_row_groups == groups and f.metadata.num_rows == 300
    assert [f.metadata.row_group(i).num_rows for i in range(groups)] == \
        [flush_rows] * (groups - 1) + [300 - flush_rows * (groups - 1)]
    one = one.drop_columns("landmarks")  # the store's, never the timeline's
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.concat([one.to_pandas()] * 300,
                                                                   ignore_index=True))


def test_an_all_or_nothing_sink_publishes_nothing_on_an_exception(tmp_path):
    out = tmp_path / "r.parquet"
    with pytest.raises(KeyboardInterrupt):
        with TimelineSink(out, partial=False) as sink:
            sink.write_table(_rows((Frame(np.zeros((4, 4, 3), np.uint8), Path("a.jpg")), _faces(2))))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
