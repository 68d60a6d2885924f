from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOBATCH_SHARED", ROOT.parent / "shared")) / "data"
SAMPLE = ROOT / "examples" / "sample"


def at_thread_counts(fn, counts=(1, 2, 3)) -> list:
    """fn() called once with each torch thread count (the count is restored after): its
    results, in that order."""
    import torch

    threads = torch.get_num_threads()
    try:
        results = []
        for n in counts:
            torch.set_num_threads(n)
            results.append(fn())
        return results
    finally:
        torch.set_num_threads(threads)


def shared_path(*parts: str) -> Path:
    """A file under ../shared/data, or skip the test cleanly when it is absent (fresh clone)."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not available: {p}")
    return p


@pytest.fixture(scope="session")
def astronaut_rgb():
    import cv2

    img = cv2.imread(str(SAMPLE / "astronaut.jpg"))
    assert img is not None, "examples/sample/astronaut.jpg ships with the repo"
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="session")
def detector():
    from emobatch.faces.detection.detector import Detector

    return Detector()
