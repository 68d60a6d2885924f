"""Batch throughput of a folder of videos: one process, --workers 2 and a Dask cluster, the
cost of checkpoints, and the work a kill loses.

    python benchmarks/batch_throughput.py FOLDER [--every N] [--json OUT]

FOLDER: at least a dozen short clips, e.g. a folder of links to ../shared/data/media/videos'
liveportrait clips. Every figure comes from the real `emobatch run` command, timed as a whole
process (start-up and model loading included); each run's timeline is compared with the
single-process one. Prints a table and, with --json, writes it with the CPU model.
"""
from __future__ import annotations

import argparse
import json
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def isa() -> str:
    flags = Path("/proc/cpuinfo").read_text()
    return "amx" if "amx_bf16" in flags else "avx512" if "avx512f" in flags else "avx2"


def emobatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "emobatch", "run", *map(str, args), "--quiet"]


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def kill_and_resume(base: list[str], out: Path, after: float) -> dict:
    """SIGKILL the run `after` seconds in, then --resume: the time the kill cost and what the
    run's folder had kept."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(base, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = time.perf_counter() - t0
    items = out.with_name(f".{out.name}.emobatch") / "items"
    kept = 0
    for d in items.glob("*"):
        done = d / "done.json"
        if done.is_file():
            kept += json.loads(done.read_text())["result"]["frames"]
        else:
            states = sorted(d.glob("state-*.json"))
            kept += json.loads(states[-1].read_text())["frames"] if states else 0
    resumed = timed(base + ["--resume"])
    return {"killed_after_s": round(killed, 2), "frames_kept_at_kill": kept,
            "resume_s": round(resumed, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--every", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="emobatch-batch-"))
    common = ["--every", str(a.every)]
    res: dict = {"cpu_model": cpu_model(), "isa": isa(), "folder": str(a.folder),
                 "every": a.every, "runs": {}}

    def run(name: str, *extra: str) -> float:
        out = tmp / f"{name}.parquet"
        secs = timed(emobatch(a.folder, "--out", out, *common, *extra))
        res["runs"][name] = {"wall_s": round(secs, 2)}
        return secs

    one = run("workers1")
    ref = pd.read_parquet(tmp / "workers1.parquet")
    frames = int(ref.drop_duplicates(["source", "frame"]).shape[0])
    res["files"], res["frames"] = int(ref["source"].nunique()), frames
    run("workers2", "--workers", "2")
    run("no_checkpoints", "--checkpoint-every", "1e9")
    run("checkpoint_every_2s", "--checkpoint-every", "2")
    try:
        from distributed import LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=":0") as cluster:
            run("dask_2x1", "--scheduler", cluster.scheduler_address)
    except ImportError:
        print("dask not installed: pip install 'emobatch[dask]'")
    for name, r in res["runs"].items():
        r["frames_per_s"] = round(frames / r["wall_s"], 2)
        r["vs_workers1"] = round(one / r["wall_s"], 3)
        df = pd.read_parquet(tmp / f"{name}.parquet")
        r["identical"] = bool(df.equals(ref))
    base = res["runs"]["no_checkpoints"]["wall_s"]
    res["checkpoint_overhead"] = {
        "default_30s": round(res["runs"]["workers1"]["wall_s"] / base - 1, 4),
        "every_2s": round(res["runs"]["checkpoint_every_2s"]["wall_s"] / base - 1, 4)}
    out = tmp / "killed.parquet"
    kill = kill_and_resume(emobatch(a.folder, "--out", out, *common), out, one / 2)
    kill["lost_s"] = round(kill["killed_after_s"] + kill["resume_s"] - one, 2)
    kill["identical"] = bool(pd.read_parquet(out).equals(ref))
    res["kill_at_half"] = kill
    print(f"{res['cpu_model']} ({res['isa']}): {res['files']} files, {frames} frames")
    for name, r in res["runs"].items():
        print(f"  {name:22s} {r['wall_s']:8.1f} s  {r['frames_per_s']:7.1f} frames/s  "
              f"x{r['vs_workers1']:.3f}  identical={r['identical']}")
    print(f"  checkpoint overhead: {res['checkpoint_overhead']}")
    print(f"  SIGKILL at half-time: {kill}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
