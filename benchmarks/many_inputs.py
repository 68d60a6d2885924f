"""Runs of many inputs: what each input costs beyond its own frames, and metadata at scale.

    python benchmarks/many_inputs.py photos [--n 20000] [--size 64] [--dir DIR] [--json OUT]
    python benchmarks/many_inputs.py metadata [--n 1000000] [--json OUT]

`photos` writes N small noise photos (no face: the detector's work is as small as it gets),
then, in one process, times (a) the pipeline alone over every photo (`FacePipeline.frames`,
what the faces cost) and (b) the whole `emobatch.run` over the folder (discovery, each
input's store, publishing the timeline and its sidecars, removing the run's folder). The
per-input overhead is (b - a) / N. It also prints the timeline's footer size.

`metadata` builds N synthetic per-input results, publishes them through `TimelineSink` (the
timeline, its footer and its inputs table) and reads them back with `read_metadata`, timing
each step: the footer must stay small however many inputs a run has.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

import emobatch
from emobatch.batch.process_tuning import configure_process
from emobatch.batch.sinks import TimelineSink  # noqa
from emobatch.config import Settings
from emobatch.pipeline import FacePipeline
from emobatch.plan import resolve_plan
from emobatch.timeline import TimelinePaths, read_metadata

from machine import machine_info


def make_photos(folder: Path, n: int, size: int) -> list[Path]:
    """n noise JPEGs of size x size in 100 subfolders (as a photo collection is kept)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"{i % 100:02d}" / f"p{i:06d}.jpg"
        if not p.is_file():
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (size, size), np.uint8)).save(p, quality=80)
        paths.append(p)
    return paths


def photos(a: argparse.Namespace) -> dict:
    configure_process()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(a.dir or tmp) / f"{a.n}x{a.size}"  # exactly these: the run walks it
        files = make_photos(folder, a.n, a.size)
        pipe = FacePipeline(resolve_plan(Settings()))
        t0 = time.perf_counter()
        for f in files:
            for _ in pipe.frames(f):
                pass
        faces_s = time.perf_counter() - t0
        out = Path(tmp) / "r.parquet"
        t0 = time.perf_counter()
        emobatch.run(folder, out)
        run_s = time.perf_counter() - t0
        footer = len((pq.read_metadata(out).metadata or {}).get(b"emobatch", b""))
    return {"photos": a.n, "size": a.size, "pipeline_s": round(faces_s, 2),
            "run_s": round(run_s, 2), "overhead_ms_per_input": round((run_s - faces_s) / a.n * 1e3, 2),
            "footer_bytes": footer}


def metadata(a: argparse.Namespace) -> dict:
    results = [{"source": f"/data/photos/{i % 1000:03d}/p{i:07d}.jpg", "kind": "image",
                "frames": 1, "faces": i % 3, "seconds": 0.01, "error": None, "annotated": None,
                "resumed_from": None, "traceback": None, "changed": False, "reused": False,
                "restarted": False} for i in range(a.n)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.parquet"
        t0 = time.perf_counter()
        with TimelineSink(out, {"files": a.n}, partial=False, inputs=results):
            pass
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        meta = read_metadata(out)
        read_s = time.perf_counter() - t0
        assert len(meta["results"]) == a.n and meta["results"][-1] == results[-1]
        footer = len((pq.read_metadata(out).metadata or {}).get(b"emobatch", b""))
        table = TimelinePaths(out).inputs.stat().st_size
    return {"inputs": a.n, "write_s": round(write_s, 2), "read_s": round(read_s, 2),
            "footer_bytes": footer, "inputs_table_bytes": table}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    ph = sub.add_parser("photos")
    ph.add_argument("--n", type=int, default=20_000)
    ph.add_argument("--size", type=int, default=64)
    ph.add_argument("--dir", default=None, help="keep the photos here, in N'x'SIZE/ (made once)")
    me = sub.add_parser("metadata")
    me.add_argument("--n", type=int, default=1_000_000)
    for s in (ph, me):
        s.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    res = {"machine": machine_info(), **(photos(a) if a.what == "photos" else metadata(a))}
    print(json.dumps(res, indent=1))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
