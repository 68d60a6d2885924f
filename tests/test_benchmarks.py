"""The benchmarks' shared helper runs the product's own path (the scripts themselves print
figures and are not timed here)."""
from __future__ import annotations

import sys

import pandas as pd

import emobatch
from conftest import ROOT, SAMPLE


def test_a_benchmark_run_writes_the_timeline_emobatch_run_writes(tmp_path):
    """product_run.run_as_product (stage_profile, video_throughput and long_video_memory time
    it) reads the store's parts as the run writes them and gives `emobatch run`'s rows."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from product_run import run_as_product
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from emobatch.config import Settings
    from emobatch.pipeline import FacePipeline

    clip = SAMPLE / "astronaut_clip.mp4"
    settings = Settings(device="cpu", people="off")
    frames = run_as_product(FacePipeline(settings), clip, tmp_path / "b.parquet")
    got = pd.read_parquet(tmp_path / "b.parquet")
    want = emobatch.run([str(clip)], settings=settings)
    assert frames > 0 and len(got) == len(want) > 0
    assert (got["emotion"].to_numpy() == want["emotion"].to_numpy()).all()


def test_label_quality_scores_ck_crops_as_given_and_as_the_product_frames_them(
        tmp_path, astronaut_rgb, detector):
    """label_quality's CK+ columns: the crops as they are, and the face the product's
    detector and alignment find in each (another framing, the same labels)."""
    import cv2
    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from label_quality import Candidate, ck_scores, load_ck
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    x0, y0, x1, y1 = detector.detect(astronaut_rgb).xyxy[0].astype(int)
    pad = (x1 - x0) // 2  # a looser framing than the product's
    face = astronaut_rgb[max(0, y0 - pad):y1 + pad, max(0, x0 - pad):x1 + pad]
    crop = cv2.resize(cv2.cvtColor(face, cv2.COLOR_RGB2GRAY), (48, 48), interpolation=cv2.INTER_AREA)
    for name in ("happy", "sad"):
        (tmp_path / name).mkdir()
        cv2.imwrite(str(tmp_path / name / "a.png"), crop)
    ck = load_ck(str(tmp_path))
    assert ck["ck"].labels.tolist() == ck["ck_aligned"].labels.tolist()
    assert ck["ck_aligned"].images.shape == ck["ck"].images.shape == (2, 48, 48)
    assert np.abs(ck["ck_aligned"].images.astype(int) - ck["ck"].images).mean() > 10
    row = ck_scores(Candidate(None, "torch", "none"), ck)
    assert row["ck_acc"] == row["ck_happy"] / 2 + row["ck_sad"] / 2
    assert {"ck_aligned_acc", "ck_aligned_happy", "ck_aligned_sad"} <= set(row)
