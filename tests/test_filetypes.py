"""File types: the suffix sets (emobatch.media.filetypes), probing of unknown suffixes, and what a
folder walk skips (emobatch.media.sources.discover_inputs). Clips are made here with PyAV."""
from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from emobatch.media import annotate, filetypes, sources
from emobatch.errors import InputError
from emobatch.media.sources import (NO_SUFFIX, Discovery, discover, discover_inputs,
                              iter_frames, kind_of, probe_kind)

# container suffix -> an encoder FFmpeg always has (no libx264 needed) that the container takes
CLIPS = {".flv": "flv", ".mpg": "mpeg1video", ".ts": "mpeg2video", ".3gp": "mpeg4"}
N_FRAMES = 6


def make_clip(path: Path, codec: str, n: int = N_FRAMES, size: tuple[int, int] = (64, 48)) -> Path:
    """n frames of a grey bar that grows frame by frame, 25 fps."""
    w, h = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            img = np.zeros((h, w, 3), np.uint8)
            img[:, : 8 * (i + 1)] = 200
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    for suffix, codec in CLIPS.items():
        make_clip(root / f"clip{suffix}", codec)
    return root


def test_one_place_owns_the_suffix_sets():
    assert sources.VIDEO_SUFFIXES is filetypes.VIDEO_SUFFIXES
    assert not hasattr(annotate, "VIDEO_SUFFIXES")  # one place: filetypes
    assert sources.IMAGE_SUFFIXES is filetypes.IMAGE_SUFFIXES
    for suffix in (".flv", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".3gp", ".wmv", ".ogv", ".vob"):
        assert suffix in filetypes.VIDEO_SUFFIXES
        assert filetypes.kind_by_suffix(Path("a" + suffix.upper())) == "video"
    assert not filetypes.IMAGE_SUFFIXES & filetypes.VIDEO_SUFFIXES


def test_folder_of_common_containers_is_discovered_and_decoded(clip_folder):
    found = discover_inputs([clip_folder])
    assert sorted(p.name for p in found.files) == sorted(f"clip{s}" for s in CLIPS)
    assert found.skipped == {} and found.unreadable == []
    for path in found.files:
        assert kind_of(path) == "video"
        assert annotate.annotated_name(path, None, Path(".")).suffix == ".mp4"  # drawn as a video
        frames = list(iter_frames(path))
        assert [f.index for f in frames] == list(range(N_FRAMES)), path.name
        assert frames[0].image.shape == (48, 64, 3)
        assert frames[-1].t_sec == pytest.approx((N_FRAMES - 1) / 25, abs=0.002), path.name
        # the bar grows by 8 px a frame: the decoded pixels are the clip's own
        bar = [int((f.image[24, :, 0] > 100).sum()) for f in frames]
        assert bar == pytest.approx([8 * (i + 1) for i in range(N_FRAMES)], abs=2), path.name


def test_run_processes_a_folder_of_common_containers(clip_folder):
    import emobatch

    df = emobatch.run([clip_folder])
    per_source = df.groupby(df["source"].map(lambda s: Path(s).suffix))["frame"].nunique()
    assert per_source.to_dict() == {s: N_FRAMES for s in CLIPS}
    assert df["emotion"].isna().all()  # grey bars: no faces, one row per frame
    assert not df.attrs.get("errors")


def test_explicit_unknown_suffix_is_probed(clip_folder, tmp_path):
    video = tmp_path / "recording.vid"
    video.write_bytes((clip_folder / "clip.ts").read_bytes())
    photo = tmp_path / "photo.dat"
    Image.new("RGB", (20, 10), (255, 0, 0)).save(photo, format="PNG")
    text = tmp_path / "notes.xyz"
    text.write_text("not media")
    assert (probe_kind(video), probe_kind(photo), probe_kind(text)) == ("video", "image", None)
    assert (kind_of(video), kind_of(photo), kind_of(text)) == ("video", "image", None)
    assert kind_of(tmp_path / "missing.vid") is None

    assert discover([video, photo, text]) == [video, photo, text]  # named: kept, whatever the suffix
    assert len(list(iter_frames(video))) == N_FRAMES
    (frame,) = iter_frames(photo)
    assert frame.image.shape == (10, 20, 3) and tuple(frame.image[0, 0]) == (255, 0, 0)
    with pytest.raises(InputError, match=r'unsupported file type "\.xyz": neither an image'):
        list(iter_frames(text))
    empty = tmp_path / "empty.vid"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="zero-byte file"):  # the file's state says more
        list(iter_frames(empty))
    # an annotated copy of a probed video is an MP4
    assert annotate.annotated_name(video, tmp_path, tmp_path / "ann").name == "recording.vid.mp4"


def test_a_video_named_as_a_photo_is_processed_as_the_video_it_is(tmp_path):
    """`clip.jpg` holding the sample clip: every frame in the timeline with its time, drawn as
    an MP4 (`clip.jpg.mp4`); a broken `.jpg` is still reported as a broken image."""
    import pandas as pd

    from conftest import ROOT, SAMPLE

    clip, broken = tmp_path / "clip.jpg", tmp_path / "broken.jpg"
    clip.write_bytes((SAMPLE / "astronaut_clip.mp4").read_bytes())
    broken.write_bytes(b"\xff\xd8\xff\xe0 a jpeg cut short")
    out, ann = tmp_path / "r.parquet", tmp_path / "ann"
    r = subprocess.run([sys.executable, "-m", "emobatch", "run", str(clip), str(broken), "--out",
                        str(out), "--annotate", str(ann), "--every", "3", "--quiet"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr  # the broken photo
    df = pd.read_parquet(out)
    assert sorted(df["frame"].unique()) == list(range(0, 30, 3))  # the 2 s, 15 fps clip
    assert df["t_sec"].notna().all() and (df["emotion"].notna()).any()
    errors = pd.read_csv(tmp_path / "r.errors.csv")
    assert errors["source"].tolist() == [str(broken)]
    assert "not a decodable image" in errors["error"].iloc[0]
    with av.open(str(ann / "clip.jpg.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264"
    assert not (ann / "clip.jpg").exists()


def test_walk_counts_skipped_files_by_suffix_and_unreadable_folders(tmp_path, monkeypatch):
    root = tmp_path / "in"
    for rel in ["a.jpg", "b.TXT", "sub/c.txt", "sub/d.json", "sub/README", "sub/e.mpg",
                ".hidden.txt", ".cache/f.txt", "locked/g.jpg"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # os.walk lists folders through os.scandir
    found = discover_inputs([root, root / "a.jpg", tmp_path / "missing.flv"])
    assert isinstance(found, Discovery)
    assert [p.relative_to(tmp_path).as_posix() for p in found.files] == [
        "in/a.jpg", "in/sub/e.mpg", "missing.flv"]
    assert found.skipped == {".json": 1, ".txt": 2, NO_SUFFIX: 1}  # hidden files not counted
    assert list(found.skipped) == sorted(found.skipped)
    assert found.unreadable == [(root / "locked", "Permission denied")]
    assert discover([root]) == found.files[:2]
