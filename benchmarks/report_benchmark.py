"""Time and size of `emobatch report` on a long video, without processing one.

The timeline of a real run of one clip is repeated, with frames and times shifted by the
clip's length, to about --minutes minutes, and the clip and its annotated MP4 are repeated
the same way (remuxed by long_video_memory.repeat_video, no re-encoding), so the report reads
real thumbnails from a long video and links a long annotated MP4:

    emobatch run VIDEO --out /tmp/b/r.parquet --annotate /tmp/b/ann
    python benchmarks/report_benchmark.py /tmp/b/r.parquet --annotate /tmp/b/ann [--minutes 10]

Prints rows, report seconds (best of --repeat, with and without thumbnails), the page's size
and peak RSS.
"""
from __future__ import annotations

import argparse
import json
import resource
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import emobatch
from emobatch.analysis import coverage
from emobatch.media.annotate import annotated_name
from emobatch.report import write_report
from long_video_memory import repeat_video
from timing import best_time


def long_timeline(timeline: Path, video: Path, out: Path, repeats: int) -> Path:
    """The timeline's rows repeated `repeats` times, times shifted by the clip's duration,
    source renamed to `video`; Parquet with the original run metadata."""
    df = emobatch.read_timeline(timeline)
    meta = df.attrs.get("emobatch", {})
    clip = coverage(df).iloc[0]
    frames = int(df["frame"].max()) + 1
    long = pd.concat([df.assign(frame=df["frame"] + k * frames,
                                t_sec=df["t_sec"] + k * clip["duration_s"])
                      for k in range(repeats)], ignore_index=True)
    long["source"] = str(video)
    table = pa.Table.from_pandas(long, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           b"emobatch": json.dumps(meta).encode()})
    pq.write_table(table, out, compression="zstd")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("timeline", type=Path, help="timeline of a run of ONE video")
    p.add_argument("--annotate", type=Path, required=True, help="that run's --annotate folder")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--keep", type=Path, default=None,
                   help="write the files here, not to a temp folder")
    a = p.parse_args()
    src = Path(emobatch.read_timeline(a.timeline)["source"].iloc[0])
    with tempfile.TemporaryDirectory() as tmp:
        d = a.keep or Path(tmp)
        (d / "ann").mkdir(parents=True, exist_ok=True)
        long_video = d / f"long_{src.name}"
        reps = repeat_video(src, long_video, a.minutes)
        repeat_video(annotated_name(src, None, a.annotate),
                     annotated_name(long_video, None, d / "ann"), a.minutes)
        timeline = long_timeline(a.timeline, long_video, d / "long.parquet", reps)
        rows = len(emobatch.read_timeline(timeline))
        out = d / "report.html"
        kw = {"annotate_dir": d / "ann"}
        with_thumbs = best_time(lambda: write_report(timeline, out, **kw), a.repeat)
        size = out.stat().st_size
        without = best_time(
            lambda: write_report(timeline, d / "plain.html", thumbnails=False, **kw), a.repeat)
        seconds = coverage(emobatch.read_timeline(timeline)).iloc[0]["duration_s"]
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{reps} repeats, {rows} rows, {seconds:.1f} s of video")
        print(f"report: {with_thumbs:.2f} s with thumbnails, {without:.2f} s without; "
              f"{size / 1e3:.0f} kB ({(d / 'plain.html').stat().st_size / 1e3:.0f} kB without "
              f"thumbnails); peak RSS {rss:.0f} MB (torch included: long_video_memory imports "
              f"the pipeline)")


if __name__ == "__main__":
    main()
