"""Summarise an emobatch timeline with pandas.

    emobatch run examples/sample --out out/results.parquet
    python examples/analyse_timeline.py out/results.parquet

Prints, per source: frames, frames with a face, the dominant emotion, and for videos the
share of time in each emotion per track (each row weighted by the time to the next frame).
"""
from __future__ import annotations

import sys

import pandas as pd

import emobatch


def main(path: str) -> None:
    df = emobatch.read_timeline(path)
    meta = df.attrs.get("emobatch", {})
    metrics = meta.get("model_metrics") or {}
    key = metrics.get("selected_on", "publictest_acc")
    what = "FER+ majority" if key == "publictest_ferplus_acc" else "FER2013 labels"
    print(f"{path}: {len(df)} rows, model {meta.get('arch')} "
          f"(PublicTest, {what}, no TTA: {metrics.get(key, float('nan')):.3f})")
    per_source = df.groupby("source").agg(frames=("frame", "nunique"),
                                          faces=("face", "count"),
                                          dominant=("emotion", lambda s: s.mode().iat[0] if s.notna().any() else None))
    print(per_source.to_string())
    video = df.dropna(subset=["t_sec", "track"]).copy()
    if len(video):
        video = video.sort_values(["source", "track", "t_sec"])
        video["dt"] = video.groupby(["source", "track"])["t_sec"].diff(-1).abs()
        video["dt"] = video["dt"].fillna(video["dt"].median())
        share = video.pivot_table(index=["source", "track"], columns="emotion", values="dt",
                                  aggfunc="sum", fill_value=0.0)
        print("\nshare of time per emotion, per track:")
        print(share.div(share.sum(axis=1), axis=0).round(2).to_string())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/results.parquet")
