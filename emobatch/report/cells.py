"""The report's HTML pieces: formatted numbers and times, emotion chips and mixes, table
rows, thumbnails (`page` lays them out)."""
from __future__ import annotations

import html
from typing import Any

import pandas as pd

from ..types import EMOTIONS

esc = html.escape


def colour(emotion: str) -> str:
    from ..media.annotate import PALETTE

    return "#%02x%02x%02x" % PALETTE.get(emotion, (128, 128, 128))


def clock(t: float) -> str:
    """Seconds as m:ss.s (h:mm:ss from an hour); '-' for NaN."""
    if t is None or pd.isna(t):
        return "-"
    m, s = divmod(float(t), 60)
    return f"{int(m // 60)}:{int(m % 60):02d}:{s:04.1f}" if m >= 60 else f"{int(m)}:{s:04.1f}"


def pct(x: float) -> str:
    return "-" if pd.isna(x) else f"{100 * x:.0f}%"


def num(x: float, fmt: str = ".2f") -> str:
    return "-" if pd.isna(x) else format(x, fmt)


def chip(emotion: Any) -> str:
    if not isinstance(emotion, str):
        return "-"
    return f'<span class="chip" style="background:{colour(emotion)}">{esc(emotion)}</span>'


def track_id(track: Any) -> str:
    return "untracked" if pd.isna(track) else f"#{int(track)}"


def plural(n: Any, word: str) -> str:
    """'1 track', '2 tracks'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def every(n: Any) -> str | None:
    """1 -> 'every frame', 2 -> 'every 2nd frame'; None stays None."""
    if n is None:
        return None
    n = int(n)
    if n <= 1:
        return "every frame"
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10 if n % 100 not in (11, 12, 13) else 0, "th")
    return f"every {n}{suffix} frame"


def table(headers: list[str], rows: list[str], cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    return (f'<table class="{cls}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def tr(cells: list[str], attrs: str = "") -> str:
    return f"<tr{attrs}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def mix(row: pd.Series) -> str:
    """The emotion mix (share_<e>) as a stacked bar, percentages in its tooltip."""
    parts, tip = [], []
    for e in EMOTIONS:
        share = row.get(f"share_{e}")
        if isinstance(share, float) and share > 0:
            parts.append(f'<i style="width:{100 * share:.1f}%;background:{colour(e)}"></i>')
            tip.append(f"{e} {100 * share:.0f}%")
    return f'<span class="mix" title="{esc(", ".join(tip))}">{"".join(parts)}</span>'


def thumb(uri: str | None) -> str:
    return f'<img class="thumb" alt="face" src="{uri}">' if uri else ""
