"""The HTML report's page: overview, a section per video (probability areas, episodes,
tables), the photos; inline CSS and JavaScript, nothing fetched."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import analysis
from ..types import EMOTIONS
from .data import MAX_PHOTO_FACES, ReportData, plotted_tracks, thumb_key

MAX_EPISODE_ROWS = 300   # per video, the longest episodes, shown in time order
_ESC = html.escape


# --------------------------------------------------------------------------- formatting


def _hex(emotion: str) -> str:
    from ..media.annotate import PALETTE

    return "#%02x%02x%02x" % PALETTE.get(emotion, (128, 128, 128))


def _t(t: float) -> str:
    """Seconds as m:ss.s (h:mm:ss from an hour); '-' for NaN."""
    if t is None or pd.isna(t):
        return "-"
    m, s = divmod(float(t), 60)
    return f"{int(m // 60)}:{int(m % 60):02d}:{s:04.1f}" if m >= 60 else f"{int(m)}:{s:04.1f}"


def _pct(x: float) -> str:
    return "-" if pd.isna(x) else f"{100 * x:.0f}%"


def _num(x: float, fmt: str = ".2f") -> str:
    return "-" if pd.isna(x) else format(x, fmt)


def _chip(emotion: Any) -> str:
    if not isinstance(emotion, str):
        return "-"
    return f'<span class="chip" style="background:{_hex(emotion)}">{_ESC(emotion)}</span>'


def _track(track: Any) -> str:
    return "-" if pd.isna(track) else f"#{int(track)}"


def _table(headers: list[str], rows: list[str], cls: str = "") -> str:
    head = "".join(f"<th>{_ESC(h)}</th>" for h in headers)
    return (f'<table class="{cls}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _tr(cells: list[str], attrs: str = "") -> str:
    return f"<tr{attrs}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _mix(row: pd.Series) -> str:
    """The emotion mix (share_<e>) as a stacked bar, percentages in its tooltip."""
    parts, tip = [], []
    for e in EMOTIONS:
        share = row.get(f"share_{e}")
        if isinstance(share, float) and share > 0:
            parts.append(f'<i style="width:{100 * share:.1f}%;background:{_hex(e)}"></i>')
            tip.append(f"{e} {100 * share:.0f}%")
    return f'<span class="mix" title="{_ESC(", ".join(tip))}">{"".join(parts)}</span>'


def _thumb(uri: str | None) -> str:
    return f'<img class="thumb" alt="face" src="{uri}">' if uri else ""


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


def _axis(dur: float) -> str:
    """Time ticks under the plots (HTML, so labels are not stretched with the SVGs)."""
    step = next((s for s in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
                 if dur / s <= 10), 7200)
    ticks = np.arange(0, dur + 1e-9, step)
    return '<div class="axis">' + "".join(
        f'<span style="left:{100 * t / dur:.2f}%">{_t(t)}</span>' for t in ticks) + "</div>"


def _track_plot(tr: pd.Series, series: pd.DataFrame, eps: pd.DataFrame, dur: float,
                thumb: str | None) -> str:
    """One track: thumbnail and label, then its probability areas and episode bar."""
    label = (f'<div class="who">{_thumb(thumb)}<b>{_track(tr["track"])}</b>'
             f'<small>{_t(tr["time_s"])} on screen</small>{_chip(tr["dominant"])}</div>')
    return (f'<div class="trow">{label}<div class="chart"><div class="ph"></div>'
            f'{_area_svg(series, dur)}{_episode_svg(eps, dur)}</div></div>')


# --------------------------------------------------------------------------- sections


def _of(df: pd.DataFrame, source: str, track: Any = None) -> pd.DataFrame:
    """Rows of df for one source (and one track; <NA> matches <NA>)."""
    rows = df[df["source"] == source]
    if track is None:
        return rows
    return rows[rows["track"].isna()] if pd.isna(track) else rows[rows["track"] == track]


def _summary_table(tracks: pd.DataFrame, thumbs: dict) -> str:
    rows = [_tr([_thumb(thumbs.get(thumb_key(r))), _track(r["track"]), _t(r["time_s"]),
                 f'{_t(r["first_s"])}-{_t(r["last_s"])}', _pct(r["coverage"]),
                 _chip(r["dominant"]), _mix(r), _num(r["mean_confidence"])],
                f' data-t="{r["first_s"]:.3f}"') for _, r in tracks.iterrows()]
    return _table(["", "track", "on screen", "seen", "coverage", "dominant", "emotion mix",
                   "mean confidence"], rows, "summary")


def _episode_table(eps: pd.DataFrame) -> str:
    note = ""
    if len(eps) > MAX_EPISODE_ROWS:
        note = (f'<p class="note">The {MAX_EPISODE_ROWS} longest of {len(eps)} episodes; all '
                f'are in emobatch.episodes(df).</p>')
        eps = eps.nlargest(MAX_EPISODE_ROWS, "duration_s").sort_index()
    rows = [_tr([_track(r.track), _chip(r.emotion), _t(r.onset_s), _t(r.offset_s),
                 f"{r.duration_s:.1f} s", _t(r.peak_s), f"{r.peak_prob:.2f}", f"{r.mean_prob:.2f}"],
                f' data-t="{r.onset_s:.3f}"') for r in eps.itertuples()]
    return note + _table(["track", "emotion", "onset", "offset", "duration", "peak at", "peak p",
                          "mean p"], rows, "episodes")


def _video_section(i: int, src: pd.Series, data: ReportData, url: str | None,
                   thumbs: dict) -> str:
    source = src["source"]
    dur = float(src["duration_s"]) if src["duration_s"] > 0 else 1.0
    tracks, eps = _of(data.tracks, source), _of(data.episodes, source)
    plots = [_track_plot(tr, _of(data.series, source, tr["track"]),
                         _of(eps, source, tr["track"]), dur, thumbs.get(thumb_key(tr)))
             for _, tr in plotted_tracks(tracks).iterrows()]
    more = len(tracks) - len(plots)
    player = (f'<video controls preload="metadata" src="{_ESC(url)}"></video>' if url else
              '<p class="note">No annotated video found (run with --annotate, or give '
              'emobatch report --annotate DIR).</p>')
    head = (f'<h2 id="v{i}" title="{_ESC(source)}">{_ESC(Path(source).name)}</h2>'
            f'<p>{_t(src["duration_s"])} · {src["frames_total"]} frames · faces in '
            f'{_pct(src["coverage"])} of them · {src["tracks"]} tracks · mix {_mix(src)}</p>')
    body = (f'<div class="plots">{"".join(plots)}<div class="trow"><div class="who"></div>'
            f'{_axis(dur)}</div></div>' if plots else '<p class="note">No faces found.</p>')
    if more > 0:
        body += f'<p class="note">{more} shorter tracks are in the tables only.</p>'
    tables = (f"<h3>Tracks</h3>{_summary_table(tracks, thumbs)}"
              f"<h3>Episodes</h3>{_episode_table(eps)}" if len(tracks) else "")
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


def _run_facts(meta: dict[str, Any], raw: bool) -> dict[str, Any]:
    """The run overview's lines from the metadata (missing entries are left out)."""
    s = meta.get("settings") or {}
    weights = meta.get("weights")
    if weights:
        weights = (f'{Path(str(weights)).name} ({str(meta.get("weights_sha256"))[:12]}…, '
                   f'{meta.get("arch")})')
    return {"files": meta.get("files"), "frames": meta.get("frames"), "faces": meta.get("faces"),
            "errors": len(meta.get("errors") or []),
            "run time": f'{meta["seconds"]:.1f} s' if "seconds" in meta else None,
            "emobatch": meta.get("emobatch_version"), "device": meta.get("device"),
            "weights": weights,
            "TTA photos / videos": f'{meta["tta"]} / {meta.get("tta_video")}' if "tta" in meta
            else None,
            "quality": s.get("quality"), "every": s.get("every"),
            "classified every": meta.get("classify_every"),
            "smoothing τ": s.get("smooth_tau"), "tracking": s.get("track"),
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
    errors = [_tr([_ESC(str(e.get("source"))), _ESC(str(e.get("error")))])
              for e in data.meta.get("errors") or []]
    return ('<section class="overview"><h2>Run</h2><dl>' + dl + "</dl><h3>Files</h3>"
            + _table(["file", "kind", "frames", "duration", "coverage", "faces", "tracks",
                      "dominant", "emotion mix"], rows, "sources")
            + (("<h3>Errors</h3>" + _table(["file", "error"], errors, "errors")) if errors else "")
            + "</section>")


def render(data: ReportData, videos: dict[str, str], thumbs: dict[tuple[str, str], str],
           title: str = "timeline") -> str:
    """The report page: overview, one section per video, the photos; a complete HTML string."""
    vids = data.sources[data.sources["kind"] == "video"].reset_index(drop=True)
    sections = {r["source"]: f"v{i}" for i, r in vids.iterrows()}
    sections |= {s: "photos" for s in data.sources.loc[data.sources["kind"] == "image", "source"]}
    body = [_overview(data, sections)]
    body += [_video_section(i, r, data, videos.get(r["source"]), thumbs)
             for i, r in vids.iterrows()]
    if (data.sources["kind"] == "image").any():
        body.append(_photo_section(data, thumbs))
    legend = "".join(_chip(e) for e in EMOTIONS)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>emobatch report: {_ESC(title)}</title><style>{_CSS}</style></head><body>'
            f'<header><h1>emobatch report <small>{_ESC(title)}</small></h1>'
            f'<div class="legend">{legend}</div></header>{"".join(body)}'
            f'<script>{_JS}</script></body></html>\n')


# Nothing may be fetched but the linked annotated MP4s (media-src) and inline data.
_CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
        "img-src data:; media-src 'self' file: data: blob:")

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:0 16px 40px;
color:#222}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:6px 0;z-index:2}
h1{font-size:20px;margin:4px 0}h1 small{color:#777;font-weight:normal}h2{margin:28px 0 4px}
.legend .chip{margin-right:4px}
.chip{display:inline-block;padding:0 6px;border-radius:8px;color:#000;font-size:12px}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px}dt{color:#666}dd{margin:0}
table{border-collapse:collapse;margin:6px 0;font-size:13px}
th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:middle}
tr[data-t]{cursor:pointer}tr[data-t]:hover{background:#f3f6ff}
.mix{display:inline-flex;width:140px;height:12px;background:#eee;vertical-align:middle}
.mix i{display:block;height:100%}
.thumb{height:40px;border-radius:3px;vertical-align:middle}
video{display:block;width:100%;max-width:720px;max-height:405px;background:#000}
.plots{margin-top:6px}.trow{display:flex;align-items:center;margin:3px 0}
.who{width:215px;flex:none;display:flex;align-items:center;gap:6px;font-size:12px}
.who small{color:#666}
.chart{position:relative;flex:1;cursor:crosshair}
.area{display:block;width:100%;height:48px;background:#f4f4f4}
.eps{display:block;width:100%;height:8px;margin-top:1px}.eps rect{cursor:pointer}
.ph{position:absolute;top:0;bottom:0;width:2px;background:#000;left:0;pointer-events:none}
.axis{position:relative;flex:1;height:16px;font-size:11px;color:#666}
.axis span{position:absolute;transform:translateX(-50%)}
.note,.now{color:#666;font-size:12px}
.gallery{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0;text-align:center;font-size:12px}figure .thumb{height:64px}
"""

# Seeking: a click on a plot goes to that time, on an episode or a table row to its onset.
_JS = """
document.querySelectorAll('section.video').forEach(function (sec) {
  var video = sec.querySelector('video'), dur = +sec.dataset.dur;
  var now = sec.querySelector('.now span');
  function fmt(t) { var m = Math.floor(t / 60), s = (t - 60 * m).toFixed(1);
    return m + ':' + (s < 10 ? '0' : '') + s; }
  function show(t) {
    sec.querySelectorAll('.ph').forEach(function (p) { p.style.left = (100 * t / dur) + '%'; });
    now.textContent = fmt(t);
  }
  function seek(t) { if (video) { video.currentTime = t; } show(t); }
  sec.querySelectorAll('.chart').forEach(function (c) {
    c.addEventListener('click', function (e) {
      var t = e.target.closest('[data-t]');
      if (t) { seek(+t.dataset.t); return; }
      var r = c.getBoundingClientRect();
      seek(Math.max(0, Math.min(1, (e.clientX - r.left) / r.width)) * dur);
    });
  });
  sec.querySelectorAll('tr[data-t]').forEach(function (row) {
    row.addEventListener('click', function () { seek(+row.dataset.t); });
  });
  if (video) { video.addEventListener('timeupdate', function () { show(video.currentTime); }); }
});
"""

