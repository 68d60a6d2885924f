"""Identical CLI runs write byte-identical annotated outputs (the CLI's malloc tuning on)."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import av
import cv2

from conftest import ROOT, SAMPLE


def _odd_clip(path: Path, width: int = 321, height: int = 241, n: int = 30) -> Path:
    """The sample clip resized to an odd size (yuv444p keeps it odd), padded by 1 px for
    H.264: sizes an odd number of macroblocks across (321x241 -> 322x242: 21), where
    libx264's MB-tree pass read uninitialised memory and runs differed."""
    with av.open(str(SAMPLE / "astronaut_clip.mp4")) as src, av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
        for i, frame in enumerate(src.decode(video=0)):
            if i == n:
                break
            rgb = cv2.resize(frame.to_ndarray(format="rgb24"), (width, height))
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def _annotate(inputs: Path, run: Path) -> dict[str, str]:
    """Run the real CLI (its process tuning included); sha256 of each annotated file."""
    r = subprocess.run([sys.executable, "-m", "emobatch", "run", str(inputs), "--out",
                        str(run / "t.parquet"), "--annotate", str(run / "ann"), "--quiet"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return {str(p.relative_to(run / "ann")): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((run / "ann").rglob("*")) if p.is_file()}


def test_identical_runs_give_identical_annotated_files(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, (w, h) in {"a.mp4": (321, 241), "b.mp4": (335, 239), "c.mp4": (367, 242)}.items():
        _odd_clip(inputs / name, w, h)
    (inputs / "z.jpg").write_bytes((SAMPLE / "astronaut.jpg").read_bytes())
    first, second = _annotate(inputs, tmp_path / "a"), _annotate(inputs, tmp_path / "b")
    assert set(first) == {"a.mp4", "b.mp4", "c.mp4", "z.jpg"}
    assert first == second
