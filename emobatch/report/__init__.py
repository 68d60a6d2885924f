"""The offline HTML report of a timeline (`emobatch report RESULTS [--out report.html]`).

One self-contained file: inline CSS, inline SVG plots, a few lines of inline JavaScript and
face thumbnails as data URIs; the page fetches nothing (its Content-Security-Policy forbids
it). Every figure comes from `emobatch.analysis` (summaries, episodes, binned series) and
the run metadata: this package only lays them out (`data`: what is shown, `page`: the
HTML, `thumbnails`: face crops read from the inputs).

Annotated MP4s are linked, not inlined: an hour of video as a data URI would make a
gigabyte page. The `<video>` points at the MP4 by a path relative to the report, so the
report works where it was written, or moved together with the annotated folder; without
the MP4 the page still works, minus playback; its poster (the frame shown before play) is
a small JPEG data URI. An `annotate_dir` given that holds none of the timeline's annotated
videos gives a ReportWarning (the CLI prints it).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

from ..errors import ReportWarning
from ..media.annotate import annotated_name
from ..media.discover import kind_of
from .data import MAX_PLOTTED_TRACKS, PLOT_BINS, ReportData, analyse, check_timeline
from .page import render
from .thumbnails import make_posters, make_thumbnails

__all__ = ["MAX_PLOTTED_TRACKS", "PLOT_BINS", "ReportData", "analyse", "annotated_paths",
           "make_posters", "make_thumbnails", "render", "report_path", "write_report"]


def write_report(timeline: str | Path, out: str | Path | None = None, *,
                 annotate_dir: str | Path | None = None, thumbnails: bool = True,
                 raw: bool = False, min_episode: float = 0.5) -> Path:
    """Write the HTML report of a timeline (.parquet/.csv) atomically; returns its path.

    out: default `<timeline stem>.report.html` beside the timeline. annotate_dir: where the
    run's annotated outputs are (default: the metadata's `annotate`, if any); its MP4s are
    embedded by relative path (a ReportWarning when one is given and holds none of them).
    thumbnails=False leaves every face picture out (privacy), the videos' posters too; so
    does a run with `blur_faces` in its metadata's settings, whatever `thumbnails` says.
    raw: analyse the per-frame `*_raw` probabilities. min_episode: episodes' min_duration.
    """
    from ..atomic import atomic_write
    from ..timeline import read_timeline

    timeline = Path(timeline)
    out = report_path(timeline, out)
    df = read_timeline(timeline)
    check_timeline(df, str(timeline))
    data = analyse(df, raw, min_episode)
    settings = data.meta.get("settings")
    if isinstance(settings, dict) and settings.get("blur_faces"):
        thumbnails = False  # the run blurred every face it wrote: so does its report
    paths = annotated_paths(data.sources["source"], annotate_dir, data.meta)
    if annotate_dir is not None:
        _check_annotate_dir(Path(annotate_dir), data, paths)
    videos = {s: _url(p, out.parent) for s, p in paths.items()}
    thumbs = make_thumbnails(data) if thumbnails else {}
    posters = make_posters(data, paths) if thumbnails else {}
    page = render(data, videos, thumbs, title=timeline.name, posters=posters)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, "w", encoding="utf-8") as fh:
        fh.write(page)
    return out


def report_path(timeline: str | Path, out: str | Path | None = None) -> Path:
    """Where the report of `timeline` goes: `out`, else `<stem>.report.html` beside it
    (`TimelinePaths.report`)."""
    from ..timeline import TimelinePaths

    return Path(out) if out is not None else TimelinePaths(timeline).report


def _check_annotate_dir(folder: Path, data: ReportData, found: dict[str, Path]) -> None:
    """ReportWarning when the timeline has videos and none of their MP4s was found."""
    videos = int((data.sources["kind"] == "video").sum())
    if videos and not found:
        where = "is not a folder" if not folder.is_dir() else (
            f"holds none of the timeline's {videos} annotated video(s)")
        warnings.warn(f"--annotate {folder} {where}: the report has no video playback",
                      ReportWarning, stacklevel=3)


def _url(path: Path, report_dir: Path) -> str:
    """path relative to report_dir, as a URL."""
    return quote(Path(os.path.relpath(path.resolve(), report_dir.resolve())).as_posix())


def annotated_paths(sources: Iterable[str], annotate_dir: str | Path | None,
                    meta: dict[str, Any]) -> dict[str, Path]:
    """source -> its annotated MP4, for the video sources whose MP4 exists.

    annotate_dir None: where the run wrote them (the metadata's `annotated` map, source ->
    path, then its `annotate` folder). A folder given is where they are now, and only
    there: a mapped MP4 at its place below the run's folder, else one found by
    annotate.annotated_name's file name, the candidate sharing the most parent folders with
    the source winning (names mirror the inputs below the folder).
    """
    known = {s: Path(p) for s, p in (meta.get("annotated") or {}).items() if p}
    run_dir = meta.get("annotate")
    if annotate_dir is not None:
        known = {s: _moved(p, Path(run_dir), Path(annotate_dir)) for s, p in known.items()
                 } if run_dir else {}
    folder = annotate_dir if annotate_dir is not None else run_dir
    index: dict[str, list[Path]] = {}
    if folder is not None and Path(folder).is_dir():
        for sub, _, files in os.walk(folder):
            for name in files:
                index.setdefault(name, []).append(Path(sub, name))
    found = {}
    for src in sources:
        if kind_of(Path(src)) != "video":
            continue
        if src in known and known[src].is_file():
            found[src] = known[src]
            continue
        parents = Path(src).parent.parts[::-1]
        cands = sorted(index.get(annotated_name(Path(src), None, Path(".")).name, []),
                       key=lambda c: -_common_prefix(c.parent.parts[::-1], parents))
        if cands:
            found[src] = cands[0]
    return found


def _moved(path: Path, old: Path, new: Path) -> Path:
    """path, written below folder old, at its place below folder new."""
    try:
        return new / path.relative_to(old)
    except ValueError:
        return new / path.name


def _common_prefix(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """How many leading items a and b share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
