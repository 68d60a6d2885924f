"""The offline HTML report of a timeline (`emobatch report RESULTS [--out report.html]`).

One self-contained file: inline CSS, inline SVG plots, a few lines of inline JavaScript and
face thumbnails as data URIs; the page fetches nothing (its Content-Security-Policy forbids
it). Every figure comes from `emobatch.analysis` (summaries, episodes, binned series) and
the run metadata: this package only lays them out (`data`: what is shown, `page`: the
HTML, `thumbnails`: face crops read from the inputs).

Annotated MP4s are linked, not inlined: an hour of video as a data URI would make a
gigabyte page. The `<video>` points at the MP4 by a path relative to the report, so the
report works where it was written, or moved together with the annotated folder; without
the MP4 the page still works, minus playback.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

from .data import MAX_PLOTTED_TRACKS, PLOT_BINS, ReportData, analyse
from .page import render
from .thumbnails import make_thumbnails

__all__ = ["MAX_PLOTTED_TRACKS", "PLOT_BINS", "ReportData", "analyse", "find_annotated",
           "make_thumbnails", "render", "write_report"]


def write_report(timeline: str | Path, out: str | Path | None = None, *,
                 annotate_dir: str | Path | None = None, thumbnails: bool = True,
                 raw: bool = False, min_episode: float = 0.5) -> Path:
    """Write the HTML report of a timeline (.parquet/.csv) atomically; returns its path.

    out: default `<timeline stem>.report.html` beside the timeline. annotate_dir: where the
    run's annotated outputs are (default: the metadata's `annotate`, if any); its MP4s are
    embedded by relative path. thumbnails=False leaves every face picture out (privacy).
    raw: analyse the per-frame `*_raw` probabilities. min_episode: episodes' min_duration.
    """
    from ..batch.sinks import read_timeline
    from ..atomic import atomic_write

    timeline = Path(timeline)
    out = Path(out) if out is not None else timeline.with_name(f"{timeline.stem}.report.html")
    data = analyse(read_timeline(timeline), raw, min_episode)
    ann = annotate_dir if annotate_dir is not None else data.meta.get("annotate")
    videos = find_annotated(data.sources["source"], ann, data.meta, out.parent)
    thumbs = make_thumbnails(data) if thumbnails else {}
    page = render(data, videos, thumbs, title=timeline.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, "w", encoding="utf-8") as fh:
        fh.write(page)
    return out


def find_annotated(sources: Iterable[str], annotate_dir: str | Path | None,
                   meta: dict[str, Any], report_dir: Path) -> dict[str, str]:
    """source -> URL of its annotated MP4 relative to report_dir, for those that exist.

    The metadata's `annotated` map (source -> path) wins; else the MP4 is looked up in
    annotate_dir by annotate.annotated_name's file name, the candidate sharing the most
    parent folders with the source winning (names mirror the inputs below the folder).
    """
    from ..media.annotate import annotated_name
    from ..media.discover import kind_of

    known = {s: Path(p) for s, p in (meta.get("annotated") or {}).items() if p}
    index: dict[str, list[Path]] = {}
    if annotate_dir is not None and Path(annotate_dir).is_dir():
        for folder, _, files in os.walk(annotate_dir):
            for name in files:
                index.setdefault(name, []).append(Path(folder, name))
    urls = {}
    for src in sources:
        if kind_of(Path(src)) != "video":
            continue
        cands = [known[src]] if src in known else index.get(
            annotated_name(Path(src), None, Path(".")).name, [])
        parents = Path(src).parent.parts[::-1]
        cands = sorted((c for c in cands if c.is_file()), key=lambda c: -_common_prefix(
            c.parent.parts[::-1], parents))
        if cands:
            rel = os.path.relpath(cands[0].resolve(), report_dir.resolve())
            urls[src] = quote(Path(rel).as_posix())
    return urls


def _common_prefix(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """How many leading items a and b share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
