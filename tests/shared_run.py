"""One real run of the shared media, made once per pytest run for the analysis and report
tests: a clip whose face leaves the frame half way, at every 2nd frame, and two group photos
(one with five faces, one with none)."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import shared_path

_runs: dict[int, Path] = {}


def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Parquet timeline of the run (annotated outputs in its folder's `ann/`)."""
    inputs = [shared_path("media", "videos", "pyfeat_face_noface.mov"),
              shared_path("media", "groups", "pyfeat_multi_face.jpg"),
              shared_path("media", "groups", "pyfeat_free-mountain-vector-01.jpg")]
    key = id(tmp_path_factory)
    if key not in _runs:
        import emobatch

        out = tmp_path_factory.mktemp("real_run")
        _runs[key] = emobatch.run(inputs, out=out / "r.parquet", annotate=out / "ann", every=2)
    return _runs[key]
