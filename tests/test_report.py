"""Tests for emobatch.report and `emobatch report`: the page's content from synthetic
timelines, then the real run's page in headless Chromium (no console errors, no network,
plots and tables present, clicks seek the video)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cdp
from emobatch.report import MAX_PLOTTED_TRACKS, PLOT_BINS, write_report
from emobatch.types import EMOTIONS
from shared_run import real_run


def _synthetic(path: Path, seconds: float, tracks: int = 2, fps: float = 25.0,
               period: float = 20.0) -> Path:
    """A video timeline: `tracks` faces in every frame, track k's emotion EMOTIONS[(i + k) % 7]
    during the i-th `period` seconds (p 0.7); written as Parquet (no run metadata)."""
    n = int(seconds * fps)
    frame = np.repeat(np.arange(n), tracks)
    track = np.tile(np.arange(tracks), n)
    t = frame / fps
    label = ((t // period).astype(int) + track) % len(EMOTIONS)
    probs = np.full((len(frame), len(EMOTIONS)), 0.05, np.float32)
    probs[np.arange(len(frame)), label] = 0.7
    df = pd.DataFrame({"source": "clip.mp4", "frame": frame, "t_sec": t, "face": track,
                       "track": track, "x1": 10.0 + 60 * track, "y1": 10.0,
                       "x2": 50.0 + 60 * track, "y2": 50.0, "det_score": 0.99})
    df[list(EMOTIONS)] = probs
    df["emotion"] = np.asarray(EMOTIONS)[label]
    df["confidence"] = 0.7
    df[[f"{e}_raw" for e in EMOTIONS]] = probs
    df.to_parquet(path)
    return path


def _no_network(page: str) -> None:
    """Nothing in the page's markup points outside it."""
    assert not re.search(r'(src|href|action)\s*=\s*"(https?:|//)', page)
    assert "@import" not in page and "url(http" not in page
    assert "default-src 'none'" in page  # the CSP forbids fetching anything else


def test_report_of_a_synthetic_video(tmp_path: Path) -> None:
    out = write_report(_synthetic(tmp_path / "t.parquet", 60, tracks=3), tmp_path / "r.html")
    page = out.read_text()
    _no_network(page)
    assert page.count('<svg class="area"') == 3 and page.count('<svg class="eps"') == 3
    # track k starts on EMOTIONS[k] and changes every 20 s: 3 episodes each
    assert page.count('<tr data-t="') == 3 + 9  # 3 track rows, 9 episode rows
    assert 'data-t="20.000"' in page and 'data-t="40.000"' in page
    assert "No annotated video found" in page and "<video" not in page
    assert "<img" not in page  # the input is not readable: no thumbnails


def test_an_hour_stays_small(tmp_path: Path) -> None:
    timeline = _synthetic(tmp_path / "t.parquet", 3600, tracks=2, fps=5)
    out = write_report(timeline, tmp_path / "r.html")
    page = out.read_text()
    for path in re.findall(r'<path fill="#[0-9a-f]{6}" d="([^"]*)"', page):
        assert path.count("H") <= PLOT_BINS
    assert len(page) < 1_500_000


def test_many_tracks_plot_the_longest(tmp_path: Path) -> None:
    out = write_report(_synthetic(tmp_path / "t.parquet", 10, tracks=MAX_PLOTTED_TRACKS + 3),
                       tmp_path / "r.html")
    page = out.read_text()
    assert page.count('<svg class="area"') == MAX_PLOTTED_TRACKS
    assert "3 shorter tracks are in the tables only" in page


def test_photos_gallery_and_thumbnails_option(tmp_path: Path) -> None:
    from conftest import SAMPLE

    photo = SAMPLE / "astronaut.jpg"
    row = {"source": str(photo), "frame": 0, "t_sec": None, "face": 0.0, "track": None,
           "x1": 170.0, "y1": 40.0, "x2": 330.0, "y2": 240.0, "det_score": 0.99,
           **{e: (0.7 if e == "happy" else 0.05) for e in EMOTIONS}, "emotion": "happy",
           "confidence": 0.7, **{f"{e}_raw": 0.05 for e in EMOTIONS}}
    pd.DataFrame([row]).to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "t.meta.json").write_text(json.dumps({"files": 1, "frames": 1, "faces": 1,
                                                     "errors": [{"source": "bad.jpg",
                                                                 "error": "zero-byte file"}]}))
    page = write_report(tmp_path / "t.csv", tmp_path / "r.html").read_text()
    assert 'id="photos"' in page and page.count('src="data:image/jpeg;base64,') == 2
    assert "zero-byte file" in page  # the errors table, from the metadata
    private = write_report(tmp_path / "t.csv", tmp_path / "p.html", thumbnails=False).read_text()
    assert "<img" not in private and "data:image" not in private and 'id="photos"' in private


def test_cli_report(tmp_path: Path) -> None:
    timeline = _synthetic(tmp_path / "t.parquet", 5)
    cmd = [sys.executable, "-m", "emobatch", "report", str(timeline)]
    r = subprocess.run(cmd + ["--no-thumbnails", "--raw"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "t.report.html").is_file()
    r = subprocess.run(cmd[:-1] + [str(tmp_path / "missing.parquet")], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "no such timeline" in r.stderr


# --------------------------------------------------------------------------- in a real browser


@pytest.fixture(scope="module")
def browser():
    if cdp.chromium_binary() is None:
        pytest.skip("chromium is not installed (CI installs it: apt-get install chromium)")
    with cdp.Browser(width=1280, height=900) as b:
        yield b


def test_real_run_report_in_chromium(tmp_path_factory: pytest.TempPathFactory,
                                     browser: cdp.Browser) -> None:
    timeline = real_run(tmp_path_factory)
    out = write_report(timeline, tmp_path_factory.mktemp("report") / "report.html",
                       annotate_dir=timeline.parent / "ann")
    browser.open(out)
    assert browser.problems() == []
    urls = browser.requests()
    assert urls and all(u.startswith(("file://", "data:")) for u in urls), urls
    assert any(u.endswith(".mp4") for u in urls)  # the annotated video, by relative path
    counts = browser.js("""({
        area: document.querySelectorAll('section.video svg.area path').length,
        episodes: document.querySelectorAll('svg.eps rect').length,
        tables: [...document.querySelectorAll('table')].map(t => t.className),
        rows: document.querySelectorAll('table.episodes tbody tr').length,
        thumbs: [...document.querySelectorAll('img.thumb')].filter(i => i.naturalWidth > 0).length,
        width: document.querySelector('svg.area').getBoundingClientRect().width})""")
    assert counts["area"] == len(EMOTIONS) and counts["width"] > 500  # one track, 7 layers
    assert counts["episodes"] == counts["rows"] >= 1
    assert set(counts["tables"]) == {"sources", "summary", "episodes", "faces"}
    assert counts["thumbs"] >= 1 + 5  # the video's track and the group photo's faces
    # the video plays: clicks on an episode, a table row and the plot seek it
    ready = browser.js("""new Promise(r => { const v = document.querySelector('video');
        if (v.readyState >= 1) r(v.readyState);
        else v.onloadedmetadata = () => r(v.readyState); })""")
    assert ready >= 1
    seek = """(sel => { const el = document.querySelector(sel);
        el.dispatchEvent(new MouseEvent('click', {bubbles: true, clientX: %s}));
        return [document.querySelector('video').currentTime, +(el.dataset.t || -1)]; })"""
    now, onset = browser.js(seek % 0 + "('svg.eps rect:last-child')")
    assert onset > 0 and now == pytest.approx(onset, abs=0.05)
    now, onset = browser.js(seek % 0 + "('table.episodes tbody tr:first-child')")
    assert now == pytest.approx(onset, abs=0.05)
    box = browser.js("(r => [r.left, r.width])"
                     "(document.querySelector('.chart').getBoundingClientRect())")
    dur = browser.js("+document.querySelector('section.video').dataset.dur")
    now, _ = browser.js(seek % (box[0] + box[1] / 2) + "('.chart')")
    assert now == pytest.approx(dur / 2, abs=0.1)
    assert browser.problems() == []
