"""The HTML report's page: overview, a section per video (probability areas, episodes,
tables), the photos; inline CSS and JavaScript, nothing fetched."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import analysis
from ..types import EMOTIONS
from .assets import CSP, CSS, JS
from .cells import (chip as _chip, clock as _t, colour as _hex, esc as _ESC, every as _every,
                    mix as _mix, num as _num, pct as _pct, plural as _plural, table as _table,
                    thumb as _thumb, tr as _tr, track_id as _track)
from .data import (MAX_PEOPLE, MAX_PHOTO_FACES, ReportData, grouped_by_person,
                   plotted_tracks, thumb_key, untracked, video_tracks)

MAX_EPISODE_ROWS = 300   # per video, the longest episodes, shown in time order


# --------------------------------------------------------------------------- plots


def _area_svg(series: pd.DataFrame, dur: float) -> str:
    """Stacked step areas of the 7 probabilities over time (viewBox 1000 x 100); layers
    painted from the top of the stack down, gaps where the track is away left empty."""
    x0 = series["t0"].to_numpy() / dur * 1000
    x1 = series["t1"].to_numpy() / dur * 1000
    starts = np.flatnonzero(np.r_[True, np.abs(x0[1:] - x1[:-1]) > 1e-6])
    ends = np.r_[starts[1:], len(x0)]
    cum = np.cumsum(series[list(EMOTIONS)].to_numpy(np.float64), axis=1)
    paths = []
    for k in range(len(EMOTIONS) - 1, -1, -1):
        y = np.round(100 * (1 - cum[:, k] / np.maximum(cum[:, -1], 1e-9)), 1)
        d = "".join(f"M{x0[a]:.1f} 100" + "".join(f"V{y[i]:g}H{x1[i]:.1f}" for i in range(a, b))
                    + "V100Z" for a, b in zip(starts, ends))
        paths.append(f'<path fill="{_hex(EMOTIONS[k])}" d="{d}"/>')
    return ('<svg class="area" viewBox="0 0 1000 100" preserveAspectRatio="none" role="img">'
            + "".join(paths) + "</svg>")


def _episode_svg(eps: pd.DataFrame, dur: float) -> str:
    """One coloured bar per episode; a click seeks to its onset."""
    rects = "".join(
        f'<rect x="{r.onset_s / dur * 1000:.1f}" width="{max(r.duration_s / dur * 1000, 0.5):.1f}" '
        f'height="10" fill="{_hex(r.emotion)}" data-t="{r.onset_s:.3f}"><title>'
        f'{_ESC(r.emotion)} {_t(r.onset_s)}-{_t(r.offset_s)}, peak {r.peak_prob:.2f} at '
        f'{_t(r.peak_s)}</title></rect>' for r in eps.itertuples())
    return ('<svg class="eps" viewBox="0 0 1000 10" preserveAspectRatio="none">'
            + rects + "</svg>")


GENERATOR = '<meta name="generator" content="emobatch">'
"""In every report's head: a rerun may replace an earlier report, never another file."""


def _axis(dur: float) -> str:
    """Time ticks under the plots (HTML, so labels are not stretched with the SVGs)."""
    step = next((s for s in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
                 if dur / s <= 10), None)
    if step is None:  # over 10 h (a timestamp may be huge): 1, 2 or 5 times 10^k hours
        hours = dur / 36000
        scale = 10.0 ** math.floor(math.log10(hours))
        step = 3600 * next(m * scale for m in (1, 2, 5, 10) if m * scale >= hours)
    ticks = np.arange(0, dur + 1e-9, step)
    return '<div class="axis">' + "".join(
        f'<span style="left:{100 * t / dur:.2f}%">{_t(t)}</span>' for t in ticks) + "</div>"


# the probability scale beside each plot: the stacked areas fill 0 (bottom) to 1 (top)
_YAXIS = ('<div class="yax" title="probability">' + "".join(
    f'<span style="top:{48 * (1 - p):g}px">{p:g}</span>' for p in (1, 0.5, 0)) + "</div>")


def _plot_legend() -> str:
    """What the plots show, beside them: the colours, the y scale, the episode bar."""
    chips = "".join(_chip(e) for e in EMOTIONS)
    return (f'<div class="trow plegend"><div class="who"><small>track</small></div><div>'
            f'probability of each emotion, stacked (0 to 1): {chips}; the thin bar under '
            f'each plot: its episodes</div></div>')


def _who(tr: pd.Series) -> str:
    """A track's label: its person and track id ('p2 · #3'), or the track id alone."""
    person = tr.get("person")
    return (f'{_ESC(str(person))} · {_track(tr["track"])}' if isinstance(person, str)
            else _track(tr["track"]))


def _track_plot(tr: pd.Series, series: pd.DataFrame, eps: pd.DataFrame, dur: float,
                thumb: str | None) -> str:
    """One track: thumbnail and label, then its probability areas, episode bar, y scale."""
    label = (f'<div class="who">{_thumb(thumb)}<b>{_who(tr)}</b>'
             f'<small>{_t(tr["time_s"])} on screen</small>{_chip(tr["dominant"])}</div>')
    return (f'<div class="trow">{label}<div class="chart"><div class="ph"></div>'
            f'{_area_svg(series, dur)}{_episode_svg(eps, dur)}</div>{_YAXIS}</div>')


# --------------------------------------------------------------------------- sections


def _of(df: pd.DataFrame, source: str, track: Any = None) -> pd.DataFrame:
    """Rows of df for one source (and one track; <NA> matches <NA>)."""
    rows = df[df["source"] == source]
    if track is None:
        return rows
    return rows[rows["track"].isna()] if pd.isna(track) else rows[rows["track"] == track]


def _summary_table(tracks: pd.DataFrame, thumbs: dict) -> str:
    rows = [_tr([_thumb(thumbs.get(thumb_key(r))), _who(r), _t(r["time_s"]),
                 f'{_t(r["first_s"])}-{_t(r["last_s"])}', _pct(r["coverage"]),
                 _chip(r["dominant"]), _mix(r), _num(r["mean_confidence"])],
                f' data-t="{r["first_s"]:.3f}"') for _, r in tracks.iterrows()]
    who = "person · track" if tracks["person"].notna().any() else "track"
    return _table(["", who, "on screen", "seen", "coverage", "dominant", "emotion mix",
                   "mean confidence"], rows, "summary")


def _untracked_table(rows: pd.DataFrame) -> str:
    """A video's untracked faces, pooled: not one person, so no plot and no 'time on screen'."""
    if rows.empty:
        return ""
    r = rows.iloc[0]
    cells = [str(r["faces"]), str(r["frames"]), _t(r["time_s"]),
             f'{_t(r["first_s"])}-{_t(r["last_s"])}', _chip(r["dominant"]), _mix(r),
             _num(r["mean_confidence"])]
    return ('<h3>Untracked faces</h3><p class="note">Faces without a track id (tracking off, '
            'or seen too briefly to confirm a track), pooled: they are not one person, so '
            'they get no plot; their episodes below follow each face index.</p>'
            + _table(["detections", "frames", "face-seconds", "seen", "dominant", "emotion mix",
                      "mean confidence"], [_tr(cells, f' data-t="{r["first_s"]:.3f}"')],
                     "untracked"))


def _episode_table(eps: pd.DataFrame) -> str:
    note = ""
    if len(eps) > MAX_EPISODE_ROWS:
        note = (f'<p class="note">The {MAX_EPISODE_ROWS} longest of {len(eps)} episodes; all '
                f'are in emobatch.episodes(df).</p>')
        eps = eps.nlargest(MAX_EPISODE_ROWS, "duration_s")
    eps = eps.sort_values("onset_s", kind="stable")  # in time order, like the plots' bars
    rows = [_tr([_track(r.track), _chip(r.emotion), _t(r.onset_s), _t(r.offset_s),
                 _t(r.duration_s), _t(r.peak_s), f"{r.peak_prob:.2f}", f"{r.mean_prob:.2f}"],
                f' data-t="{r.onset_s:.3f}"') for r in eps.itertuples()]
    return note + _table(["track", "emotion", "onset", "offset", "duration", "peak at", "peak p",
                          "mean p"], rows, "episodes")


def _player(url: str | None, poster: str | None) -> str:
    """The annotated MP4 (its poster: a frame of it, so the box is not black before play)."""
    if not url:
        return ('<p class="note">No annotated video found (run with --annotate, or give '
                'emobatch report --annotate DIR).</p>')
    attr = f' poster="{poster}"' if poster else ""
    return f'<video controls preload="metadata"{attr} src="{_ESC(url)}"></video>'


def _plots(source: str, tracks: pd.DataFrame, data: ReportData, dur: float,
           thumbs: dict) -> str:
    """The legend, a plot per plotted track (in order of first appearance), the time axis."""
    eps = _of(data.episodes, source)
    plots = [_track_plot(tr, _of(data.series, source, tr["track"]),
                         _of(eps, source, tr["track"]), dur, thumbs.get(thumb_key(tr)))
             for _, tr in grouped_by_person(plotted_tracks(tracks)).iterrows()]
    if not plots:
        return ""
    more = len(tracks) - len(plots)
    note = (f'<p class="note">{_plural(more, "shorter track")} {"is" if more == 1 else "are"} '
            f'in the tables only.</p>' if more > 0 else "")
    return (f'<div class="plots">{_plot_legend()}{"".join(plots)}<div class="trow">'
            f'<div class="who"><small>time (m:ss.s)</small></div>{_axis(dur)}'
            f'<div class="yspace"></div></div></div>{note}')


def _video_section(i: int, src: pd.Series, data: ReportData, url: str | None,
                   thumbs: dict, poster: str | None = None) -> str:
    source = src["source"]
    dur = float(src["duration_s"]) if src["duration_s"] > 0 else 1.0
    tracks, eps = video_tracks(_of(data.tracks, source)), _of(data.episodes, source)
    loose = untracked(_of(data.tracks, source))
    head = (f'<h2 id="v{i}" title="{_ESC(source)}">{_ESC(Path(source).name)}</h2>'
            f'<p>{_t(src["duration_s"])} · {_plural(src["frames_total"], "frame")} processed · '
            f'faces in {_pct(src["coverage"])} of them · {_plural(src["tracks"], "track")}'
            + (f' · {_plural(int(loose["faces"].sum()), "untracked detection")}' if len(loose)
               else "") + f' · mix {_mix(src)}</p>')
    body = _plots(source, tracks, data, dur, thumbs) or (
        '<p class="note">No tracked faces to plot: the untracked ones are below.</p>'
        if len(loose) else '<p class="note">No faces found.</p>')
    tables = (f"<h3>Tracks</h3>{_summary_table(grouped_by_person(tracks), thumbs)}"
              if len(tracks) else "")
    tables += _untracked_table(loose)
    if len(tracks) or len(loose):
        tables += "<h3>Episodes</h3>" + (_episode_table(eps) if len(eps) else (
            '<p class="note">No emotion held for the minimum episode length.</p>'))
    player = _player(url, poster)
    return (f'<section class="video" data-dur="{dur:.3f}">{head}{player}'
            f'<p class="now">t = <span>0:00.0</span> (click a plot, an episode or a row to '
            f'seek)</p>{body}{tables}</section>')


def _photo_section(data: ReportData, thumbs: dict) -> str:
    faces = data.faces[data.faces["kind"] == "image"]
    cols = analysis.prob_columns(data.raw)
    note = (f'<p class="note">The first {MAX_PHOTO_FACES} of {len(faces)} faces.</p>'
            if len(faces) > MAX_PHOTO_FACES else "")
    faces = faces.head(MAX_PHOTO_FACES)
    cards, rows = [], []
    for _, r in faces.iterrows():
        uri = thumbs.get(thumb_key(r))
        if uri:
            cards.append(f'<figure>{_thumb(uri)}<figcaption>{_chip(r["label"])} '
                         f'{r["p"]:.2f}</figcaption></figure>')
        probs = r[cols].to_numpy(np.float64)
        runners_up = ", ".join(f"{EMOTIONS[j]} {probs[j]:.2f}" for j in probs.argsort()[-2:-4:-1])
        rows.append(_tr([_thumb(uri), _ESC(Path(r["source"]).name), str(int(r["face"])),
                         _chip(r["label"]), f'{r["p"]:.2f}', runners_up]))
    no_face = data.sources[(data.sources["kind"] == "image") & (data.sources["faces"] == 0)]
    names = ", ".join(Path(s).name for s in no_face["source"])
    empty = f'<p class="note">No face in: {_ESC(names)}</p>' if names else ""
    gallery = f'<div class="gallery">{"".join(cards)}</div>' if cards else ""
    return (f'<section class="photos"><h2 id="photos">Photos</h2>{note}{gallery}'
            + _table(["", "photo", "face", "emotion", "p", "next"], rows, "faces")
            + f"{empty}</section>")


def _people_section(data: ReportData, thumbs: dict) -> str:
    """A row per person, with one face (not with --no-thumbnails or a blurred run): the
    videos' plots and tables are grouped by these ids."""
    people = data.people
    if people.empty:
        return ""
    scope = (data.meta.get("people") or {}).get("scope")
    where = {"across": "across all inputs", "video": "within each input"}.get(scope, "")
    note = (f'<p class="note">The first {MAX_PEOPLE} of {len(people)} people.</p>'
            if len(people) > MAX_PEOPLE else "")
    rows = [_tr([_thumb(thumbs.get(("person", r["person"]))), _ESC(str(r["person"])),
                 str(r["sources"]), str(r["tracks"]), _t(r["time_s"]), str(r["faces"]),
                 _chip(r["dominant"]), _mix(r), _num(r["mean_confidence"])])
            for _, r in people.head(MAX_PEOPLE).iterrows()]
    return (f'<section class="people"><h2 id="people">People</h2><p class="note">Who is '
            f'who: tracks and photo faces of one person share an id{" " + where if where else ""}'
            f' (face embeddings, clustered).</p>{note}'
            + _table(["", "person", "inputs", "tracks", "on screen", "faces", "dominant",
                      "emotion mix", "mean confidence"], rows, "people") + "</section>")


def _run_facts(meta: dict[str, Any], raw: bool) -> dict[str, Any]:
    """The run overview's lines from the metadata (missing entries are left out)."""
    s = meta.get("settings") or {}
    weights = meta.get("weights")
    if weights:
        weights = (f'{Path(str(weights)).name} ({str(meta.get("weights_sha256"))[:12]}…, '
                   f'{meta.get("arch")})')
    tau, track = s.get("smooth_tau"), s.get("track")
    return {"files": meta.get("files"), "frames": meta.get("frames"), "faces": meta.get("faces"),
            "failed inputs": len(meta.get("errors") or []),
            "run time": _t(meta["seconds"]) if "seconds" in meta else None,
            "emobatch": meta.get("emobatch_version"), "device": meta.get("device"),
            "weights": weights,
            "test-time augmentation": f'photos {meta["tta"]}, videos {meta.get("tta_video")}'
            if "tta" in meta else None,
            "quality preset": s.get("quality"), "video frames processed": _every(s.get("every")),
            "faces classified": _every(meta.get("classify_every")),
            "tracking": None if track is None else ("on" if track else "off"),
            "smoothing time constant": None if tau is None else (
                f"{tau:g} s" if tau and track is not False else "off"),
            "probabilities": "per-frame (*_raw)" if raw else "smoothed"}


def _overview(data: ReportData, sections: dict[str, str]) -> str:
    """The run (metadata), a row per input file, the errors."""
    facts = _run_facts(data.meta, data.raw)
    dl = "".join(f"<dt>{_ESC(k)}</dt><dd>{_ESC(str(v))}</dd>" for k, v in facts.items()
                 if v is not None)
    rows = []
    for _, r in data.sources.iterrows():
        name = _ESC(Path(r["source"]).name)
        link = f'<a href="#{sections[r["source"]]}">{name}</a>' if r["source"] in sections else name
        rows.append(_tr([link, r["kind"], str(r["frames_total"]), _t(r["duration_s"]),
                         _pct(r["coverage"]), str(r["faces"]), str(r["tracks"]),
                         _chip(r["dominant"]), _mix(r)]))
    errors = data.meta.get("errors") or []
    files = (_table(["file", "kind", "frames", "duration", "coverage", "faces", "tracks",
                     "dominant", "emotion mix"], rows, "sources") if rows else "")
    return ('<section class="overview"><h2>Run</h2><dl>' + dl + "</dl><h3>Files</h3>"
            + _nothing_found(data, bool(errors)) + files + _errors_table(errors) + "</section>")


def _nothing_found(data: ReportData, errors: bool) -> str:
    """The note on a timeline without rows (every input failed) or without faces."""
    why = " (the errors below say why)" if errors else ""
    if data.sources.empty:
        return (f'<p class="note empty">No rows: no input was processed, so no faces were '
                f'found{why}.</p>')
    if not data.sources["faces"].any():
        return '<p class="note empty">No faces were found in any input.</p>'
    return ""


def _errors_table(errors: list[dict[str, Any]]) -> str:
    """The failed inputs (the run's errors table), a bug's traceback folded under its row."""
    if not errors:
        return ""
    rows = []
    for e in errors:
        tb = e.get("traceback")
        fold = (f"<details><summary>traceback</summary><pre>{_ESC(str(tb))}</pre></details>"
                if isinstance(tb, str) and tb.strip() else "")
        rows.append(_tr([_ESC(str(e.get("source"))), _ESC(str(e.get("error"))),
                         _ESC(str(e.get("frames_done", "-"))), fold]))
    return "<h3>Errors</h3>" + _table(["file", "error", "frames done", "traceback"], rows,
                                      "errors")


def render(data: ReportData, videos: dict[str, str], thumbs: dict[tuple[str, str], str],
           title: str = "timeline", posters: dict[str, str] | None = None) -> str:
    """The report page: overview, one section per video, the photos; a complete HTML string.

    videos: source -> URL of its annotated MP4; thumbs: thumb_key -> data URI; posters:
    source -> data URI of a frame shown in the video's box before it plays.
    """
    posters = posters or {}
    vids = data.sources[data.sources["kind"] == "video"].reset_index(drop=True)
    sections = {r["source"]: f"v{i}" for i, r in vids.iterrows()}
    sections |= {s: "photos" for s in data.sources.loc[data.sources["kind"] == "image", "source"]}
    body = [_overview(data, sections), _people_section(data, thumbs)]
    body += [_video_section(i, r, data, videos.get(r["source"]), thumbs,
                            posters.get(r["source"])) for i, r in vids.iterrows()]
    if (data.sources["kind"] == "image").any():
        body.append(_photo_section(data, thumbs))
    legend = "".join(_chip(e) for e in EMOTIONS)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">{GENERATOR}'
            f'<title>emobatch report: {_ESC(title)}</title><style>{CSS}</style></head><body>'
            f'<header><h1>emobatch report <small>{_ESC(title)}</small></h1>'
            f'<div class="legend">{legend}</div></header>{"".join(body)}'
            f'<script>{JS}</script></body></html>\n')
