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


def test_report_of_a_blurred_run_has_no_face_pictures(tmp_path: Path) -> None:
    """Item 15: `emobatch report` on a --blur-faces run showed unblurred thumbnails; it now
    follows the run's blur_faces setting."""
    from conftest import SAMPLE

    row = {"source": str(SAMPLE / "astronaut.jpg"), "frame": 0, "t_sec": None, "face": 0.0,
           "track": None, "x1": 170.0, "y1": 40.0, "x2": 330.0, "y2": 240.0,
           "det_score": 0.99, **{e: (0.7 if e == "happy" else 0.05) for e in EMOTIONS},
           "emotion": "happy", "confidence": 0.7, **{f"{e}_raw": 0.05 for e in EMOTIONS}}
    pd.DataFrame([row]).to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "t.meta.json").write_text(json.dumps({"settings": {"blur_faces": True}}))
    page = write_report(tmp_path / "t.csv", tmp_path / "r.html").read_text()
    assert 'id="photos"' in page and "<img" not in page and "data:image" not in page


@pytest.mark.parametrize("case", ["text frame", "null source", "metadata a list"])
def test_report_on_a_timeline_with_wrong_types_is_one_line(tmp_path: Path, case: str) -> None:
    """Item 19: wrong dtypes, a null source or metadata that is not an object gave
    TypeError/AttributeError tracebacks; now one line and exit 2."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = pd.read_parquet(_synthetic(tmp_path / "t.parquet", 2))
    meta = {b"emobatch": b"{}"}
    if case == "text frame":
        df["frame"] = df["frame"].astype(str)
    elif case == "null source":
        df.loc[3, "source"] = None
    else:
        meta = {b"emobatch": b"[1, 2]"}
    pq.write_table(pa.Table.from_pandas(df).replace_schema_metadata(meta), tmp_path / "t.parquet")
    r = subprocess.run([sys.executable, "-m", "emobatch", "report", str(tmp_path / "t.parquet")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "t.report.html").exists()


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
    # "people": one row (and face) per person, since person ids (issue 34)
    assert set(counts["tables"]) == {"sources", "people", "summary", "episodes", "faces"}
    assert counts["thumbs"] >= 1 + 5  # the video's track and the group photo's faces
    looks = browser.js("""({
        poster: document.querySelector('video').poster.slice(0, 23),
        scale: [...document.querySelectorAll('.yax span')].slice(0, 3).map(s => s.textContent),
        scaleLeft: document.querySelector('.yax').getBoundingClientRect().left,
        chartRight: document.querySelector('.chart').getBoundingClientRect().right,
        legend: document.querySelectorAll('.plots .plegend .chip').length})""")
    assert looks["poster"] == "data:image/jpeg;base64,"  # a frame before play, not black
    assert looks["scale"] == ["1", "0.5", "0"] and looks["scaleLeft"] >= looks["chartRight"] - 1
    assert looks["legend"] == len(EMOTIONS)
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


# --------------------------------------------------------------------------- polish


def _spans(path: Path, spans: list[tuple], fps: float = 10.0, seconds: float = 10.0) -> Path:
    """A video timeline: a face per (track (None: untracked), start s, end s, emotion) in
    spans, present from start to end (p 0.7); frames without faces have their empty row."""
    rows = []
    for i in range(int(seconds * fps)):
        t = i / fps
        here = [(k, e) for k, a, b, e in spans if a <= t < b]
        for face, (k, e) in enumerate(here):
            probs = {x: (0.7 if x == e else 0.05) for x in EMOTIONS}
            rows.append({"source": "clip.mp4", "frame": i, "t_sec": t, "face": face,
                         "track": k, "x1": 10.0, "y1": 10.0, "x2": 50.0, "y2": 50.0,
                         "det_score": 0.99, **probs, **{f"{x}_raw": p for x, p in probs.items()},
                         "emotion": e, "confidence": 0.7})
        if not here:
            rows.append({"source": "clip.mp4", "frame": i, "t_sec": t})
    pd.DataFrame(rows).astype({"face": "Int32", "track": "Int64"}).to_parquet(path)
    return path


def _cells(table: str) -> list[list[str]]:
    """The cells of each body row of an HTML table."""
    body = table.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr[ >].*?</tr>", body)]


def _seconds(t: str) -> float:
    m, s = t.split(":")
    return 60 * int(m) + float(s)


def test_plots_have_a_scale_and_legend_and_follow_first_appearance(tmp_path: Path) -> None:
    # track 7 comes first but is short; track 3 comes later and stays longer
    timeline = _spans(tmp_path / "t.parquet", [(7, 0, 3, "happy"), (3, 1, 10, "sad")])
    page = write_report(timeline, tmp_path / "r.html").read_text()
    plots = page[page.index('<div class="plots">'):page.index("<h3>Tracks</h3>")]
    assert re.findall(r"<b>#(\d+)</b>", plots) == ["7", "3"]  # first appearance, not length
    assert [r[1] for r in _cells(page.split('<table class="summary">')[1])] == ["#7", "#3"]
    eps = _cells(page.split('<table class="episodes">')[1])
    assert [r[0] for r in eps] == ["#7", "#3"] and eps[1][2] == "0:01.0"  # by onset
    # a probability scale beside each plot, a legend of the colours above them
    scales = re.findall(r'<div class="yax"[^>]*>(.*?)</div>', plots)
    assert len(scales) == 2 and re.findall(r">([\d.]+)</span>", scales[0]) == ["1", "0.5", "0"]
    legend = plots[plots.index("plegend"):plots.index('<div class="chart">')]
    assert "probability" in legend and all(f">{e}</span>" in legend for e in EMOTIONS)


def test_plots_and_tables_are_grouped_by_person_with_one_face_each(tmp_path: Path) -> None:
    from conftest import SAMPLE

    # p1 is track 1, then track 3 after p2 (track 2) came in
    video = pd.read_parquet(_spans(tmp_path / "v.parquet", [
        (1, 0, 3, "happy"), (2, 1, 10, "sad"), (3, 4, 8, "happy")]))
    video["person"] = video["track"].map({1: "p1", 2: "p2", 3: "p1"}).astype("string")
    photo = {"source": str(SAMPLE / "astronaut.jpg"), "frame": 0, "t_sec": None, "face": 0,
             "track": None, "x1": 170.0, "y1": 40.0, "x2": 330.0, "y2": 240.0,
             "det_score": 0.99, **{e: (0.7 if e == "happy" else 0.05) for e in EMOTIONS},
             "emotion": "happy", "confidence": 0.7, **{f"{e}_raw": 0.05 for e in EMOTIONS},
             "person": "p3"}
    df = pd.concat([video, pd.DataFrame([photo])], ignore_index=True).astype(
        {"face": "Int32", "track": "Int64", "person": "string"})
    df.to_parquet(tmp_path / "t.parquet")
    page = write_report(tmp_path / "t.parquet", tmp_path / "r.html").read_text()
    labels = re.findall(r'<div class="who">(?:<img[^>]*>)?<b>(.*?)</b>', page)
    assert labels == ["p1 · #1", "p1 · #3", "p2 · #2"]  # plots grouped by person
    summary = _cells(page.split('class="summary"')[1])
    assert [row[1] for row in summary] == labels
    people = _cells(page.split('class="people"')[2])
    assert [row[1:4] for row in people] == [["p1", "1", "2"], ["p2", "1", "1"], ["p3", "1", "0"]]
    # one face per person where its input can be read (clip.mp4 cannot: the photo's only)
    assert people[2][0].startswith('<img class="thumb"') and not people[0][0]
    private = write_report(tmp_path / "t.parquet", tmp_path / "p.html", thumbnails=False)
    assert 'id="people"' in private.read_text() and "<img" not in private.read_text()
    df.to_csv(tmp_path / "t.csv", index=False)  # a --blur-faces run's: no face picture at all
    (tmp_path / "t.meta.json").write_text(json.dumps({"settings": {"blur_faces": True}}))
    blurred = write_report(tmp_path / "t.csv", tmp_path / "b.html").read_text()
    assert 'id="people"' in blurred and "<img" not in blurred and "data:image" not in blurred


def test_untracked_faces_are_no_pseudo_track(tmp_path: Path) -> None:
    # track 0 all along; untracked faces: a 0.1 s flicker, later 3 s without a track id
    timeline = _spans(tmp_path / "t.parquet", [(0, 0, 10, "happy"), (None, 2, 2.1, "fear"),
                                               (None, 5, 8, "sad")])
    page = write_report(timeline, tmp_path / "r.html", min_episode=0.5).read_text()
    assert page.count('<svg class="area"') == 1  # track 0 only: no '-' pseudo-track plot
    assert [row[1] for row in _cells(page.split('<table class="summary">')[1])] == ["#0"]
    untracked = page[page.index("<h3>Untracked faces</h3>"):page.index("<h3>Episodes</h3>")]
    assert _cells(untracked)[0][0] == "31"  # face rows: 1 + 30
    eps = _cells(page.split('<table class="episodes">')[1])
    assert all(_seconds(row[4]) >= 0.5 for row in eps), eps  # duration, m:ss.s
    # the 3 s untracked face has its episode; the 0.1 s flicker none
    assert [(row[0], _seconds(row[2])) for row in eps] == [("#0", 0.0), ("untracked", 5.0)]


def _cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emobatch", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_every_input_failed_still_gives_summary_and_report(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all")
    out, html = tmp_path / "r.parquet", tmp_path / "r.html"
    r = _cli("run", tmp_path / "empty.jpg", tmp_path / "junk.mp4", "--out", out,
             "--report", html, "--quiet")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "emobatch summary" in r.stderr and "2 input(s) failed" in r.stderr
    assert f"report: {html}" in r.stderr.replace("\n", "")
    for page in (html.read_text(), None):
        if page is None:  # the same timeline through `emobatch report`
            r = _cli("report", out)
            assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
            page = (tmp_path / "r.report.html").read_text()
        assert "No rows: no input was processed, so no faces were found" in page
        errors = _cells(page.split('<table class="errors">')[1])
        assert [Path(e[0]).name for e in errors] == ["empty.jpg", "junk.mp4"]
        assert "zero-byte file" in errors[0][1]


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The sample through `emobatch run --annotate --report` (every 5th frame): the folder
    and the command's stderr."""
    from conftest import SAMPLE

    folder = tmp_path_factory.mktemp("sample")
    r = _cli("run", SAMPLE, "--out", folder / "r.parquet", "--annotate", folder / "ann",
             "--report", folder / "r.html", "--every", "5", "--quiet")
    assert r.returncode == 0, r.stderr
    return folder, r.stderr


def test_report_wording_poster_and_a_clean_run_without_errors_table(sample_run) -> None:
    import base64

    import cv2

    folder, stderr = sample_run
    assert not (folder / "r.errors.csv").exists() and "errors:" not in stderr
    page = (folder / "r.html").read_text()
    facts = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", page))
    assert facts["tracking"] == "on" and facts["smoothing time constant"] == "0.3 s"
    assert facts["video frames processed"] == "every 5th frame"
    assert re.fullmatch(r"\d+:\d\d\.\d", facts["run time"]) and "True" not in page
    head = page.split('<section class="video"')[1].split("</p>")[0]
    assert re.search(r"0:0\d\.\d · \d+ frames processed · faces in \d+% of them · 1 track ·",
                     head), head
    # the video box shows a frame of the annotated MP4 before it plays, not black
    poster = re.search(r'<video [^>]*poster="data:image/jpeg;base64,([^"]+)"', page)
    image = cv2.imdecode(np.frombuffer(base64.b64decode(poster.group(1)), np.uint8),
                         cv2.IMREAD_COLOR)
    assert image.shape[0] == 360 and image.mean() > 40


def test_report_warns_when_the_annotate_folder_has_none_of_the_videos(sample_run) -> None:
    folder, _ = sample_run
    (folder / "elsewhere").mkdir()
    for ann, warned in (("elsewhere", True), ("missing", True), ("ann", False)):
        r = _cli("report", folder / "r.parquet", "--annotate", folder / ann, "--out",
                 folder / f"{ann}.html")
        assert r.returncode == 0, r.stderr
        assert ("warning: --annotate" in r.stderr) == warned, (ann, r.stderr)
        assert ("<video" in (folder / f"{ann}.html").read_text()) != warned


def test_a_huge_timestamp_keeps_the_report_small(tmp_path: Path) -> None:
    """Item 6: a last frame at 1e12 s made the time axis 1.4e8 ticks (unbounded memory);
    the report is written within a 4 GB address space and has at most 11 ticks."""
    rows = [{"source": "clip.mp4", "frame": i, "t_sec": t, "face": 0, "track": 0, "x1": 1.0,
             "y1": 1.0, "x2": 9.0, "y2": 9.0, "det_score": 0.9,
             **{e: float(e == "happy") for e in EMOTIONS}, "emotion": "happy",
             "confidence": 1.0} for i, t in enumerate((0.0, 0.04, 1e12))]
    pd.DataFrame(rows).to_parquet(tmp_path / "t.parquet")
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30)); "
            "from emobatch.report import write_report; write_report(*sys.argv[1:])")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "t.parquet"),
                        str(tmp_path / "r.html")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    axis = re.search(r'<div class="axis">(.*?)</div>', (tmp_path / "r.html").read_text())
    assert 2 <= axis.group(1).count("<span") <= 11


def test_a_skipped_browser_test_says_why(tmp_path: Path) -> None:
    """Item 29: the README's test command skipped the browser test silently without
    Chromium; the project's pytest options print each skip's reason."""
    (tmp_path / "test_skips.py").write_text(
        "import pytest\n\ndef test_needs_it():\n"
        "    pytest.skip('chromium is not installed (apt-get install chromium)')\n")
    from conftest import ROOT

    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-c", str(ROOT / "pyproject.toml"),
                        "--rootdir", str(tmp_path), "-p", "no:cacheprovider",
                        str(tmp_path / "test_skips.py")], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert "1 skipped" in r.stdout, r.stdout
    assert "SKIPPED" in r.stdout and "chromium is not installed" in r.stdout


def test_a_report_never_replaces_the_timeline_or_an_unrelated_file(tmp_path: Path) -> None:
    """Items 13 and 14: `report r.parquet --out r.parquet` replaced the timeline with HTML;
    an existing unrelated file was replaced silently; `--out DIR` gave a traceback. Now
    refused (exit 2, one line); --overwrite replaces the unrelated file, and an earlier
    report is rewritten without it."""
    timeline = _synthetic(tmp_path / "t.parquet", 2)
    before = timeline.read_bytes()

    def report(*args) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "emobatch", "report", str(timeline),
                               "--no-thumbnails", *map(str, args)], capture_output=True,
                              text=True)

    notes = tmp_path / "notes.html"
    notes.write_text("mine")
    for args in (["--out", timeline], ["--out", notes], ["--out", tmp_path]):
        r = report(*args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert "Traceback" not in r.stderr
    assert timeline.read_bytes() == before and notes.read_text() == "mine"
    assert report("--out", notes, "--overwrite").returncode == 0
    assert report().returncode == 0 and report().returncode == 0  # a rerun rewrites its own
    assert "emobatch report" in (tmp_path / "t.report.html").read_text()
