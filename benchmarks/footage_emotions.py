"""What the timeline says on real footage: the share of faces given each emotion, per clip and
weights file, from a whole `emobatch run` (default settings: the balanced preset, tracking
and smoothing; the reported `emotion` column).

    python benchmarks/footage_emotions.py VIDEO_OR_FOLDER... [--weights A.pt B.pt ...]
        [--json OUT]

Default --weights: the shipped model. Each weights file runs over all inputs once; the table
has one row per clip and weights file (faces = timeline rows with an emotion; clips are
shown by file name) and an `all` row
per weights file (every face of every clip counted once); weights are named by their sha256.
Meant for a before/after check of
a new model on footage nobody labelled (`../shared/data/media/videos/`), never for choosing
one: choose on PublicTest.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd

import emobatch
from emobatch.types import EMOTIONS
from emobatch.faces.emotion.weights import read_config

from machine import machine_info


def shares(df: pd.DataFrame) -> pd.DataFrame:
    """Per source (and 'all'): face count and the share of faces given each emotion."""
    faces = df[df["emotion"].notna()]
    rows = []
    for source, group in [*faces.groupby("source", sort=False), ("all", faces)]:
        counts = group["emotion"].value_counts()
        rows.append({"clip": Path(str(source)).name, "faces": len(group),
                     **{e: counts.get(e, 0) / max(len(group), 1) for e in EMOTIONS}})
    return pd.DataFrame(rows)


def footage_table(inputs: list[str], weights: str | None) -> pd.DataFrame:
    """shares() of one whole run over inputs with weights, named by the weights' sha256."""
    table = shares(emobatch.run(inputs, weights=weights))
    table.insert(0, "weights", read_config(weights)["sha256"][:12])
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", help="videos or folders (as emobatch run takes them)")
    p.add_argument("--weights", nargs="+", default=[None], help="weights files (default: shipped)")
    p.add_argument("--json", default=None, help="also write the table and machine as JSON")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    table = pd.concat([footage_table(args.inputs, w) for w in args.weights], ignore_index=True)
    info = machine_info()
    print(f"# {info['cpu_model']} ({info['isa']}), emobatch {info['emobatch']} {info['commit']}")
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "rows": table.to_dict("records")},
                                              indent=2) + "\n")


if __name__ == "__main__":
    main()
