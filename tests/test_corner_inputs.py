"""Inputs no run may stop, hang or be killed by: each becomes its own error row (or is
processed), and every other input is processed as usual."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, SAMPLE
from emobatch.types import EMOTIONS

PHOTO = SAMPLE / "astronaut.jpg"


def cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emobatch", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def errors_of(out: Path) -> dict[str, str]:
    """source file name -> its error, from the run's errors table."""
    errs = pd.read_csv(out.with_name(f"{out.stem}.errors.csv"), keep_default_na=False)
    return {Path(s).name: e for s, e in zip(errs["source"], errs["error"])}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """A folder of a photo beside files that are not regular ones, run once (walked, and the
    FIFO and the loop named as well): (folder, timeline, the finished command)."""
    d = tmp_path_factory.mktemp("hostile")
    inputs = d / "in"
    inputs.mkdir()
    shutil.copy(PHOTO, inputs / "face.jpg")
    os.mkfifo(inputs / "pipe.mp4")
    os.mkfifo(inputs / "pipe.jpg")
    os.symlink("loop.mp4", inputs / "loop.mp4")
    os.symlink("/dev/zero", inputs / "zero.mp4")
    out = d / "r.parquet"
    r = cli("run", inputs, inputs / "pipe.jpg", inputs / "loop.mp4", "--out", out,
            "--annotate", d / "ann", "--quiet", timeout=120)  # a hang fails, not stalls
    return inputs, out, r


def test_a_fifo_is_an_error_row_not_a_hang(hostile):
    """Item 1: a FIFO, walked or named, is never opened (its open() would wait for a writer
    for ever): an error row, and the photo beside it is processed."""
    _, out, r = hostile
    assert r.returncode == 1, r.stderr
    errs = errors_of(out)
    assert errs["pipe.mp4"] == errs["pipe.jpg"] == "not a regular file: a named pipe (FIFO)"
    assert set(pd.read_parquet(out)["source"].map(lambda s: Path(s).name)) == {"face.jpg"}


def test_a_symlink_loop_is_an_error_row(hostile):
    """Item 2: a symlink loop, walked or named, no longer ends the run before any work."""
    _, out, r = hostile
    assert "Traceback" not in r.stderr
    assert "Too many levels of symbolic links" in errors_of(out)["loop.mp4"]


def test_a_device_file_is_named_as_such(hostile):
    """Item 21: /dev/zero (via a symlink) is a character device, not a 'zero-byte file'."""
    _, out, _ = hostile
    assert errors_of(out)["zero.mp4"] == "not a regular file: a character device"


def test_report_on_a_fifo_source_does_not_hang(tmp_path):
    """Item 1: `emobatch report` on a timeline whose video source is now a FIFO leaves its
    thumbnails out instead of waiting in av.open."""
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    row = {"source": str(fifo), "frame": 0, "t_sec": 0.0, "face": 0, "track": 0,
           "x1": 1.0, "y1": 1.0, "x2": 9.0, "y2": 9.0, "det_score": 0.9,
           **{e: float(e == "happy") for e in EMOTIONS}, "emotion": "happy", "confidence": 1.0}
    pd.DataFrame([row]).to_parquet(tmp_path / "t.parquet")
    r = cli("report", tmp_path / "t.parquet", timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "t.report.html").is_file()


def test_a_name_that_is_not_utf8_is_processed_and_readable(tmp_path):
    """Item 3: `bad\\xff.jpg` (legal on Linux) is processed and annotated under its own
    bytes; text outputs write the byte as `\\xff`, the same in the timeline, the metadata
    and the errors table."""
    from emobatch.media.filetypes import path_text

    inputs = tmp_path / "in"
    inputs.mkdir()
    good = Path(os.fsdecode(bytes(inputs) + b"/bad\xff.jpg"))
    bad = Path(os.fsdecode(bytes(inputs) + b"/worse\xfe.jpg"))
    shutil.copy(PHOTO, good)
    bad.write_bytes(b"not an image")
    out, ann = tmp_path / "r.parquet", tmp_path / "ann"
    r = cli("run", inputs, "--out", out, "--annotate", ann, "--quiet")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "worse\\xfe.jpg" in r.stderr
    df = pd.read_parquet(out)
    assert list(df["source"].unique()) == [path_text(good)] and str(inputs) + "/bad\\xff.jpg" == path_text(good)
    assert df["face"].notna().all()
    assert (ann / good.name).is_file()  # the annotated copy has the input's own name
    import emobatch

    meta = emobatch.read_timeline(out).attrs["emobatch"]
    assert meta["annotated"] == {path_text(good): path_text(ann / good.name)}
    assert list(errors_of(out)) == ["worse\\xfe.jpg"]


def _ts(path: Path, width: int, height: int, frames: int = 20, fps: int = 10) -> Path:
    """A grey MPEG-TS recording; FFmpeg starts each one's timestamps at the same offset."""
    import av
    import numpy as np

    with av.open(str(path), "w", format="mpegts") as c:
        s = c.add_stream("mpeg2video", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            img = np.full((height, width, 3), i * 10 % 255, np.uint8)
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode(None))
    return path


def _cat(out: Path, *parts: Path) -> Path:
    out.write_bytes(b"".join(p.read_bytes() for p in parts))
    return out


def _frame_times(mp4: Path) -> list[float]:
    import av

    with av.open(str(mp4)) as c:
        return [float(f.pts * f.time_base) for f in c.decode(c.streams.video[0])]


def test_ts_whose_timestamps_jump_back_is_annotated(tmp_path):
    """Item 4: three TS recordings joined with `cat` (timestamps restart twice), annotated,
    checkpointed between the joins: every row, and an MP4 whose frames play in order."""
    video = _cat(tmp_path / "joined.ts", *(_ts(tmp_path / f"{i}.tsx", 64, 48) for i in range(3)))
    out, ann = tmp_path / "r.parquet", tmp_path / "ann"
    r = cli("run", video, "--out", out, "--annotate", ann, "--checkpoint-every", "0.5",
            "--quiet")
    assert r.returncode == 0, r.stderr
    assert len(pd.read_parquet(out)) == 60
    times = _frame_times(ann / "joined.ts.mp4")
    assert len(times) == 60 and all(b > a for a, b in zip(times, times[1:]))
    assert times[-1] == pytest.approx(5.9, abs=0.05)  # the recordings' own spacing kept


def test_resolution_change_mid_stream_keeps_every_row(tmp_path):
    """Item 5: 64x36 then 128x72 in one stream, annotated: a row for every frame decoded
    (FFmpeg drops one at the join), the larger frames scaled into the MP4's size."""
    from emobatch.media.video import iter_video

    video = _cat(tmp_path / "two.ts", _ts(tmp_path / "a.tsx", 64, 36),
                 _ts(tmp_path / "b.tsx", 128, 72))
    out, ann = tmp_path / "r.parquet", tmp_path / "ann"
    r = cli("run", video, "--out", out, "--annotate", ann, "--quiet")
    assert r.returncode == 0, r.stderr
    decoded = sum(1 for _ in iter_video(video))
    assert decoded >= 38 and len(pd.read_parquet(out)) == decoded
    assert len(_frame_times(ann / "two.ts.mp4")) == decoded


def test_a_checkpoint_with_no_track_held_resumes():
    """Item 4's `--resume`: a video checkpointed while its tracker held no track (empty,
    so falsy) saved no tracker state, and resuming it raised TypeError."""
    from emobatch.faces.tracking.smoother import Smoother
    from emobatch.faces.tracking.tracker import Tracker
    from emobatch.pipeline import _VideoState

    class Stage:
        def state_dict(self) -> dict:
            return {}

    state = _VideoState(Stage(), Tracker(), Stage(), Smoother()).state({})
    assert state["tracker"] == Tracker().state_dict() and state["smoother"] is not None
