"""Peak memory on a long video: the clip is repeated (remuxed, no re-encoding) into a
temporary MP4 of about --minutes minutes, which the default pipeline then processes while
its resident memory is sampled.

    python benchmarks/long_video_memory.py VIDEO [--minutes 10] [--quality balanced]

Prints frames, frames/s, peak RSS (MB) and RSS after the first 10% of frames, so a leak
shows as growth between the two.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import av

from emobatch.config import Settings
from emobatch.batch.process_tuning import configure_process
from emobatch.pipeline import FacePipeline
from emobatch.media.sources import video_info

from product_run import run_as_product


def repeat_video(src: Path, dst: Path, minutes: float) -> int:
    """Write src's video packets again and again with shifted timestamps; returns repeats."""
    with av.open(str(src)) as probe:
        st = probe.streams.video[0]
        clip = float(st.duration * st.time_base) if st.duration else float(probe.duration / 1e6)
    repeats = max(1, round(minutes * 60 / clip))
    with av.open(str(dst), "w") as out:
        with av.open(str(src)) as inp:
            ist = inp.streams.video[0]
            ost = out.add_stream_from_template(ist)
        offset = 0
        for _ in range(repeats):
            with av.open(str(src)) as inp:
                ist = inp.streams.video[0]
                last = 0
                for pkt in inp.demux(ist):
                    if pkt.dts is None:
                        continue
                    pkt.pts += offset
                    pkt.dts += offset
                    last = max(last, pkt.pts + (pkt.duration or 0))
                    pkt.stream = ost
                    out.mux(pkt)
                offset = last
    return repeats


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", type=Path)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--quality", default="balanced")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        long = Path(d) / "long.mp4"
        reps = repeat_video(a.video, long, a.minutes)
        configure_process()  # as the CLI does where a process starts
        pipe = FacePipeline(Settings(device="cpu", quality=a.quality))
        fps, early = video_info(long).fps or 25.0, []

        def sample(event: str, info: dict) -> None:  # once, past the first 10% of the video
            if not early and info["frames"] * pipe.settings.every / fps > a.minutes * 6:
                early.append(rss_mb())

        t0 = time.perf_counter()
        n = run_as_product(pipe, long, Path(d) / "t.parquet", sample)
        dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"video: {a.video} x{reps} ({n} frames, {a.quality})")
    print(f"frames/s: {n / dt:.2f}")
    print(f"rss_after_10pct_mb: {early[0]:.1f}")
    print(f"peak_rss_mb: {peak:.1f}")


if __name__ == "__main__":
    main()
