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
