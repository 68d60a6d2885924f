"""On a machine with CUDA: the GPU path. Every test here skips cleanly without one."""
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import emobatch

from emobatch.timeline import read_metadata
from emobatch.config import Settings
from emobatch.faces.device import MAX_FRAMES_PER_CALL, frames_per_call
from emobatch.pipeline import Checkpoint
from test_batched import CLIP, _stream

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_a_gpu_plan_has_a_detection_budget_within_the_cards_memory():
    from emobatch.plan import resolve_plan

    plan = resolve_plan(Settings(device="cuda"))
    total = torch.cuda.get_device_properties(0).total_memory
    assert 0 < plan.detect_budget <= total // 4
    assert plan.metadata()["detect_budget"] == plan.detect_budget
    n = frames_per_call(plan.detect_budget, 1920, 1080, 20)
    assert 1 <= n <= MAX_FRAMES_PER_CALL
    assert frames_per_call(plan.detect_budget, 7680, 4320, 12) <= n


def test_gpu_batched_path_finds_the_per_frame_paths_faces(monkeypatch):
    """On a GPU, batched and per-frame runs agree up to the device's rounding (a batch's
    size may change the convolutions' algorithms): faces found within 1%, and where a frame
    has as many faces both ways, boxes within a pixel on all but a few."""
    s = Settings(device="cuda", quality="exhaustive")
    one = [x for x in _stream(s, CLIP, 1, monkeypatch) if not isinstance(x, Checkpoint)]
    many = [x for x in _stream(s, CLIP, 8, monkeypatch) if not isinstance(x, Checkpoint)]
    n_one, n_many = sum(len(f) for _, f in one), sum(len(f) for _, f in many)
    assert abs(n_one - n_many) <= max(1, 0.01 * n_one)
    same = [(a, b) for (_, a), (_, b) in zip(one, many, strict=True) if len(a) == len(b)]
    close = [np.allclose(a.xyxy, b.xyxy, atol=1.0) for a, b in same]
    assert len(same) >= 0.95 * len(one) and sum(close) >= 0.95 * len(same)


def test_gpu_run_uses_the_cpus_cascade_and_finds_its_faces(tmp_path):
    """The same MTCNN cascade on CUDA, recorded truthfully; faces within 1% of the CPU's."""
    cpu = emobatch.run(CLIP, tmp_path / "cpu.parquet", device="cpu")
    gpu = emobatch.run(CLIP, tmp_path / "gpu.parquet", device="cuda")
    meta = read_metadata(gpu)
    assert meta["device"].startswith("cuda") and meta["detector_backend"] == "torch"
    n_cpu, n_gpu = read_metadata(cpu)["faces"], meta["faces"]
    assert abs(n_gpu - n_cpu) <= max(1, 0.01 * n_cpu)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_gpus_one_worker_each_give_the_one_process_timeline(tmp_path):
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(CLIP, tmp_path / name)
    one = emobatch.run(tmp_path, tmp_path / "one.parquet", device="cuda", workers=1)
    two = emobatch.run(tmp_path, tmp_path / "two.parquet", device="cuda", workers="auto")
    a, b = pd.read_parquet(one), pd.read_parquet(two)
    assert len(a) == len(b) and (a["face"].notna().sum() == b["face"].notna().sum())


def test_crops_cut_on_the_gpu_equal_opencvs_crops():
    from test_crops import _boxes, _frame
    from emobatch.faces.detection.crops import crop_windows, resize_crops
    from emobatch.faces.detection.cascade import _crops

    img = _frame()
    boxes = _boxes(*img.shape[:2], 400)
    for size in (24, 48):
        want, _ = _crops(img, boxes, size)
        win, _ = crop_windows(boxes, *img.shape[:2])
        got = resize_crops(torch.from_numpy(img).cuda().float(), win, size).cpu().numpy()
        np.testing.assert_allclose(got, want, atol=1e-3, rtol=0)
