import shutil
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

import emobatch
from conftest import SAMPLE, shared_path
from emobatch.config import Settings
from emobatch.batch.outputs import annotation_root
from emobatch.batch.driver import run_files
from emobatch.pipeline import FacePipeline
from emobatch.timeline import TimelinePaths, read_metadata

CLIP = SAMPLE / "astronaut_clip.mp4"
PHOTO = SAMPLE / "astronaut.jpg"


@pytest.fixture(scope="module")
def pipe():
    return FacePipeline(Settings(device="cpu"))


@pytest.fixture()
def mixed(tmp_path):
    """Two folders that both hold clip.mp4, a photo, a blank image and bad files."""
    import cv2

    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        shutil.copy(CLIP, tmp_path / d / "clip.mp4")
    shutil.copy(PHOTO, tmp_path / "a" / "photo.jpg")
    cv2.imwrite(str(tmp_path / "b" / "blank.png"), np.full((64, 64, 3), 200, np.uint8))
    (tmp_path / "b" / "empty.jpg").write_bytes(b"")
    data = CLIP.read_bytes()
    (tmp_path / "b" / "cut.mp4").write_bytes(data[:int(len(data) * 0.7)])
    return tmp_path


def test_api_returns_dataframe_with_every_frame():
    df = emobatch.run(CLIP, device="cpu")
    assert isinstance(df, pd.DataFrame)
    assert sorted(df["frame"].unique()) == list(range(30))
    t = df.groupby("frame")["t_sec"].first().to_numpy()
    np.testing.assert_allclose(t, np.arange(30) / 15, atol=1e-6)
    assert (df["face"].notna()).mean() > 0.9  # the astronaut is visible throughout
    assert df.attrs["errors"] == []


def test_every_n(pipe, tmp_path):
    df = emobatch.run(CLIP, device="cpu", every=4)
    assert sorted(df["frame"].unique()) == list(range(0, 30, 4))


def test_mixed_inputs_errors_and_annotations(mixed, tmp_path):
    out, ann = tmp_path / "out" / "r.parquet", tmp_path / "ann"
    s = run_files([mixed / "a", mixed / "b"], out, ann, Settings(device="cpu", every=3))
    by_name = {r.source.relative_to(mixed).as_posix(): r for r in s.results}
    assert set(by_name) == {"a/clip.mp4", "a/photo.jpg", "b/blank.png", "b/clip.mp4",
                            "b/cut.mp4", "b/empty.jpg"}
    assert "zero-byte" in by_name["b/empty.jpg"].error
    assert by_name["b/cut.mp4"].error and not by_name["a/clip.mp4"].error
    df = pd.read_parquet(out)
    # the truncated video's frames before the break are kept (also those still buffered
    # for batched classification when decoding failed)
    cut_rows = df[df["source"].str.endswith("cut.mp4")]
    assert cut_rows["frame"].nunique() == by_name["b/cut.mp4"].frames > 0
    blank = df[df["source"].str.endswith("blank.png")]
    assert len(blank) == 1 and blank["face"].isna().all()  # no face: one row, null fields
    assert df["source"].str.endswith("a/clip.mp4").sum() >= 10
    errs = pd.read_csv(TimelinePaths(out).errors)
    assert set(errs["source"].map(lambda p: p.split("/")[-1])) == {"empty.jpg", "cut.mp4"}
    meta = read_metadata(out)
    assert meta["emobatch_version"] == emobatch.__version__ and len(meta["weights_sha256"]) == 64
    for rel in ("a/clip.mp4", "b/clip.mp4", "a/photo.jpg", "b/blank.png"):
        assert (ann / rel).is_file(), rel  # mirrored, no collision between a/ and b/
    with av.open(str(ann / "a" / "clip.mp4")) as c:
        st = c.streams.video[0]
        assert st.codec_context.name == "h264" and sum(1 for _ in c.decode(st)) == 10


def test_interrupt_keeps_finished_rows(tmp_path):
    out = tmp_path / "r.parquet"
    seen = []

    def progress(event, info):
        if event == "frame":
            seen.append(info)
            if len(seen) == 5:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_files([CLIP], out, None, Settings(device="cpu"), progress)
    assert not out.exists()
    partial = pd.read_parquet(tmp_path / "r.partial.parquet")
    assert partial["frame"].nunique() >= 4


def test_annotation_root(tmp_path):
    (tmp_path / "x" / "y").mkdir(parents=True)
    f = tmp_path / "x" / "y" / "f.jpg"
    f.write_bytes(b"1")
    assert annotation_root([tmp_path / "x", f]) == (tmp_path / "x").resolve()
    assert annotation_root([f]) == (tmp_path / "x" / "y").resolve()


def test_shared_video_every_frame(pipe, tmp_path):
    video = shared_path("media", "videos", "facenet_pytorch_video.mp4")
    out = tmp_path / "v.parquet"
    run_files([video], out, None, Settings(device="cpu", every=5))
    df = pd.read_parquet(out)
    assert sorted(df["frame"].unique()) == list(range(0, 105, 5))
    assert df.groupby("frame").size().median() >= 4  # several people per frame


def test_video_faces_tracked_and_smoothed():
    from emobatch.types import EMOTIONS

    df = emobatch.run(CLIP, device="cpu", every=2).dropna(subset=["face"])
    assert df["track"].notna().all() and df["track"].nunique() == 1  # one astronaut, one id
    probs = df[list(EMOTIONS)].to_numpy()
    raw = df[[f"{e}_raw" for e in EMOTIONS]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert np.abs(probs - raw).max() > 0  # smoothing changed something...
    np.testing.assert_allclose(probs[0], raw[0], atol=1e-6)  # ...but not the first frame


def test_tracking_off_and_stills_untracked(tmp_path):
    df = emobatch.run([CLIP, PHOTO], device="cpu", every=10, track=False)
    assert df["track"].isna().all()
    from emobatch.types import EMOTIONS
    raw = df[[f"{e}_raw" for e in EMOTIONS]].to_numpy()
    np.testing.assert_allclose(df[list(EMOTIONS)].to_numpy(), raw)


def test_huge_still_detected_on_a_downscaled_copy(monkeypatch, pipe):
    import emobatch.pipeline as pl

    full = next(pipe.frames(PHOTO))[1]
    monkeypatch.setattr(pl, "MAX_STILL_SIDE", 256)  # the 512 px photo now counts as huge
    small = next(pipe.frames(PHOTO))[1]
    assert len(small) == len(full) == 1
    from emobatch.faces.boxes import iou_matrix
    assert iou_matrix(small.xyxy, full.xyxy)[0, 0] > 0.7  # boxes in full-resolution pixels
    assert np.abs(small.landmarks - full.landmarks).max() < 6


def test_skipped_files_and_unreadable_folders_reach_the_summary_and_errors(tmp_path, monkeypatch):
    import os
    from pathlib import Path

    root = tmp_path / "in"
    (root / "locked").mkdir(parents=True)
    shutil.copy(PHOTO, root / "photo.jpg")
    (root / "notes.txt").write_text("x")
    (root / "locked" / "hidden.jpg").write_bytes(b"x")
    real_scandir = os.scandir

    def scandir(path="."):  # root reads every folder: simulate one it may not list
        if not isinstance(path, int) and Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    out = tmp_path / "r.parquet"
    s = run_files([root], out, None, Settings(device="cpu"))
    assert s.skipped == {".txt": 1} and s.unreadable == [(str(root / "locked"), "Permission denied")]
    errs = pd.read_csv(TimelinePaths(out).errors)
    assert errs["error"].tolist() == ["folder not read: Permission denied"]
    assert read_metadata(out)["skipped"] == {".txt": 1}


def test_a_bug_on_one_input_is_its_error_row_with_the_traceback(tmp_path, monkeypatch):
    """An unexpected exception inside the pipeline for one photo: that input's result and
    errors-table row keep the message and the traceback; bad inputs (InputError) have none;
    the other inputs are processed."""
    for name in ("photo.jpg", "bug.jpg"):
        shutil.copy(PHOTO, tmp_path / name)
    shutil.copy(CLIP, tmp_path / "clip.mp4")
    (tmp_path / "empty.jpg").write_bytes(b"")
    process = FacePipeline.process

    def buggy(self, frame, scale=1.0):
        if frame.source.name == "bug.jpg":
            return {}["no such key"]
        return process(self, frame, scale)

    monkeypatch.setattr(FacePipeline, "process", buggy)
    out = tmp_path / "out" / "r.parquet"
    s = run_files([tmp_path], out, None, Settings(device="cpu", every=5))
    by_name = {r.source.name: r for r in s.results}
    bug, empty = by_name["bug.jpg"], by_name["empty.jpg"]
    assert bug.error == "KeyError: 'no such key'"
    assert bug.traceback.startswith("Traceback (most recent call last):")
    assert "in process_item" in bug.traceback and 'return {}["no such key"]' in bug.traceback
    assert "zero-byte" in empty.error and empty.traceback is None
    assert not by_name["photo.jpg"].error and not by_name["clip.mp4"].error
    errs = pd.read_csv(TimelinePaths(out).errors, keep_default_na=False).set_index("source")
    assert errs.loc[str(tmp_path / "bug.jpg"), "traceback"] == bug.traceback
    assert errs.loc[str(tmp_path / "empty.jpg"), "traceback"] == ""
    df = pd.read_parquet(out)
    assert {p.rsplit("/", 1)[-1] for p in df["source"]} == {"photo.jpg", "clip.mp4"}
    assert df["face"].notna().all()
    stored = [r for r in read_metadata(out)["results"] if r["source"].endswith("bug.jpg")]
    assert stored[0]["traceback"] == bug.traceback


def test_source_result_round_trip_and_results_stored_before_tracebacks():
    from emobatch.batch.one_input import SourceResult

    res = SourceResult(Path("a.mp4"), "video", 3, 2, 1.5, "KeyError: 'x'", Path("ann/a.mp4"), 1,
                       "Traceback (most recent call last):\n...")
    assert SourceResult.from_dict(res.to_dict()) == res
    old = res.to_dict()
    del old["traceback"]  # a store written before the field existed (a resumed run reads it)
    assert SourceResult.from_dict(old) == SourceResult(**{**vars(res), "traceback": None})
