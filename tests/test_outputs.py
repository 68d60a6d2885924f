"""Outputs that already exist or are shared, and names at the file system's limit
(emobatch/batch/outputs.py): every run says up front what it will not do, and what a
timeline's metadata lists is what is on disk."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import emobatch
from conftest import ROOT
from test_faults import CLIP, FAST, HOOKS, PHOTO, checksums, cli


def test_a_second_run_on_the_same_annotate_folder_is_refused_while_the_first_lives(tmp_path):
    inputs, ann, go_on = tmp_path / "in", tmp_path / "ann", tmp_path / "go-on"
    inputs.mkdir()
    shutil.copy(PHOTO, inputs / "a.jpg")
    shutil.copy(PHOTO, inputs / "b.jpg")
    # the first run holds still after its first annotated output, alive, until the second
    # is answered
    first = subprocess.Popen([sys.executable, str(HOOKS), "annotated", "1", f"waitfor:{go_on}",
                              "run", str(inputs), "--out", str(tmp_path / "r1.parquet"),
                              "--annotate", str(ann), *FAST], cwd=ROOT,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (ann / "a.jpg").is_file() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (ann / "a.jpg").is_file()
    second = cli("run", inputs, "--out", tmp_path / "r2.parquet", "--annotate", ann,
                 "--blur-faces", *FAST)
    go_on.touch()
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert second.returncode == 2 and "another emobatch run" in second.stderr, second.stderr
    assert "--annotate" in second.stderr and "Traceback" not in second.stderr
    assert not (tmp_path / "r2.parquet").exists()
    # the first run's metadata lists its own, unblurred files, and they are what is there
    listed = emobatch.read_timeline(tmp_path / "r1.parquet").attrs["emobatch"]["annotated"]
    assert sorted(Path(p).name for p in listed.values()) == ["a.jpg", "b.jpg"]
    assert sorted(checksums(ann)) == ["a.jpg", "b.jpg"]  # the lock went with its run
    before = checksums(ann)
    # a finished run's files are replaced only on request
    r = cli("run", inputs, "--out", tmp_path / "r3.parquet", "--annotate", ann, "--blur-faces", *FAST)
    assert r.returncode == 2 and "--overwrite" in r.stderr and "a.jpg" in r.stderr, r.stderr
    assert checksums(ann) == before and not (tmp_path / "r3.parquet").exists()
    r = cli("run", inputs, "--out", tmp_path / "r3.parquet", "--annotate", ann, "--blur-faces",
            "--overwrite", *FAST)
    assert r.returncode == 0, r.stderr
    assert checksums(ann) != before and sorted(checksums(ann)) == ["a.jpg", "b.jpg"]


def test_an_existing_timeline_is_replaced_only_with_overwrite(tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "r.csv"
    inputs.mkdir()
    shutil.copy(PHOTO, inputs / "a.jpg")
    assert cli("run", inputs, "--out", out, *FAST).returncode == 0
    files = checksums(tmp_path)
    assert {"r.csv", "r.meta.json"} <= set(files)  # a clean run: no errors table
    t0 = time.monotonic()
    r = cli("run", inputs, "--out", out, "--every", "2", "--quiet")
    assert r.returncode == 2 and "exists" in r.stderr and "--overwrite" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and time.monotonic() - t0 < 60
    assert checksums(tmp_path) == files  # nothing touched, no run folder made
    with pytest.raises(ValueError, match="--overwrite"):
        emobatch.run(inputs, out, every=2)
    assert checksums(tmp_path) == files
    # on request the whole result is replaced: the timeline and its sidecars
    assert emobatch.run(inputs, out, every=2, overwrite=True) == out
    meta = emobatch.read_timeline(out).attrs["emobatch"]
    assert meta["settings"]["every"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "r.csv", "r.inputs.csv", "r.meta.json"]
    r = cli("run", inputs, "--out", out, "--overwrite", *FAST)
    assert r.returncode == 0, r.stderr
    assert emobatch.read_timeline(out).attrs["emobatch"]["settings"]["every"] == 3


def test_names_at_the_file_system_limit(tmp_path):
    inputs, ann = tmp_path / "in", tmp_path / "ann"
    inputs.mkdir()
    photo = inputs / ("p" * 251 + ".jpg")  # 255 bytes: its temp names must be shortened
    video = inputs / ("v" * 248 + ".mov")  # its annotated name (+ .mp4) would be 256 bytes
    shutil.copy(PHOTO, photo)
    shutil.copy(CLIP, video)
    out = tmp_path / ("r" * 232 + ".parquet")  # 240 bytes: its temp names would be ~275
    r = cli("run", inputs, "--out", out, "--annotate", ann, "--checkpoint-every", "0.5", *FAST)
    assert r.returncode == 0, r.stderr
    df = pd.read_parquet(out)
    assert set(df["source"]) == {str(photo), str(video)} and df["face"].notna().any()
    meta = emobatch.read_timeline(out).attrs["emobatch"]
    on_disk = sorted(str(p) for p in ann.iterdir())
    assert sorted(meta["annotated"].values()) == on_disk and len(on_disk) == 2
    assert (ann / photo.name).is_file()
    shortened = Path(meta["annotated"][str(video)])
    assert shortened.name.startswith("v" * 200) and shortened.suffix == ".mp4"
    assert len(shortened.name.encode()) <= 255 and "too long" not in r.stderr
    assert meta["annotated_renamed"] == {str(video): str(shortened)}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["in", "ann", out.name, f"{out.stem}.inputs.parquet"])  # no run folder, no temp file
    #                                      left (no failure: no errors table)


@pytest.mark.parametrize("length", [250, 255])
def test_an_out_name_too_long_for_its_sidecars_is_refused_up_front(tmp_path, length):
    out = tmp_path / ("r" * (length - 8) + ".parquet")
    r = cli("run", PHOTO, "--out", out, *FAST)
    assert r.returncode == 2 and "too long" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_lock_that_cannot_be_removed_hides_no_error(tmp_path, monkeypatch):
    """Item 16: an --annotate folder made unwritable mid-run made FolderLock.release raise
    PermissionError, hiding the run's OutputError behind a traceback. Releasing never
    raises, and the lock is free for the next run."""
    from emobatch.batch.lock import FolderLock

    lock = FolderLock(tmp_path / ".emobatch.lock", "busy")
    lock.acquire()

    def refuse(self, missing_ok=False):
        raise PermissionError(13, "Permission denied", str(self))

    with monkeypatch.context() as m:
        m.setattr(Path, "unlink", refuse)
        lock.release(remove=True)
    again = FolderLock(tmp_path / ".emobatch.lock", "busy")
    again.acquire()
    again.release(remove=True)
    assert not (tmp_path / ".emobatch.lock").exists()


def test_run_report_never_replaces_an_annotated_output_or_another_file(tmp_path):
    """Items 12 and 14: `--annotate ann --report ann/photo.jpg` overwrote the annotated
    image with HTML; an existing unrelated file as --report was replaced silently."""
    ann = tmp_path / "ann"
    r = cli("run", PHOTO, "--out", tmp_path / "r.parquet", "--annotate", ann, "--report",
            ann / "astronaut.jpg", *FAST)
    assert r.returncode == 2 and "would overwrite" in r.stderr, r.stderr
    notes = tmp_path / "notes.html"
    notes.write_text("mine")
    r = cli("run", PHOTO, "--out", tmp_path / "r.parquet", "--report", notes, *FAST)
    assert r.returncode == 2 and "add --overwrite" in r.stderr, r.stderr
    assert notes.read_text() == "mine" and not (tmp_path / "r.parquet").exists()


def test_resume_without_an_unfinished_run_replaces_nothing(tmp_path):
    """Item 9: `--resume` on an --out whose run had finished replaced that run's timeline
    and annotated files (exit 0). Resume continues only an unfinished run; else refused."""
    out, ann = tmp_path / "r.parquet", tmp_path / "ann"
    assert cli("run", PHOTO, "--out", out, "--annotate", ann, *FAST).returncode == 0
    before = checksums(tmp_path)
    other = tmp_path / "other.jpg"
    shutil.copy(PHOTO, other)
    r = cli("run", other, "--out", out, "--annotate", ann, "--resume", *FAST)
    assert r.returncode == 2 and "no unfinished run" in r.stderr, r.stderr
    after = checksums(tmp_path)
    assert after.pop("other.jpg") and after == before  # the finished run's files untouched


@pytest.mark.parametrize("first, second", [("r.partial.parquet", "r.parquet"),
                                           ("q.errors.csv", "q.parquet")])
def test_a_run_deletes_no_earlier_run_file_sharing_its_stem(tmp_path, first, second):
    """Item 11: `--out r.partial.parquet` then `--out r.parquet` deleted the first run's
    timeline (taken for a partial one to supersede); so did `--out q.errors.csv` then
    `--out q.parquet` (taken for a stale errors table)."""
    assert cli("run", PHOTO, "--out", tmp_path / first, *FAST).returncode == 0
    before = (tmp_path / first).read_bytes()
    assert cli("run", PHOTO, "--out", tmp_path / second, *FAST).returncode == 0
    assert (tmp_path / first).read_bytes() == before


@pytest.mark.parametrize("live, mine", [("ann", "ann/sub"), ("ann/sub", "ann")])
def test_nested_annotate_folders_of_two_live_runs_are_refused(tmp_path, live, mine):
    """Item 10: a live run on `ann` and another on `ann/sub`: B's video overwrote
    ann/sub/x.mp4, which A's metadata still listed. A lock covers a folder, not its tree:
    a run now also looks above and below its --annotate folder."""
    from emobatch.batch.lock import FolderLock

    (tmp_path / live).mkdir(parents=True)
    held = FolderLock(tmp_path / live / ".emobatch.lock", "busy")
    held.acquire()  # the live run
    try:
        r = cli("run", PHOTO, "--out", tmp_path / "r.parquet", "--annotate", tmp_path / mine,
                *FAST)
        assert r.returncode == 2 and "another emobatch run is writing into" in r.stderr, r.stderr
        assert not (tmp_path / mine / ".emobatch.lock").exists()
    finally:
        held.release()  # the live run dies: its lock file stays, held by no one
    r = cli("run", PHOTO, "--out", tmp_path / "r.parquet", "--annotate", tmp_path / mine, *FAST)
    assert r.returncode == 0, r.stderr


def test_per_input_cost_and_footer_do_not_grow_with_the_inputs(tmp_path, monkeypatch):
    """Item 22: each input cost 6 fsyncs, and its record (208 bytes) went into the Parquet
    footer, which pyarrow refuses past ~560k inputs. The store is no longer fsynced (the
    timeline still is), and the records are the inputs table beside the timeline."""
    import pyarrow.parquet as pq

    from PIL import Image

    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd) or real(fd))
    rng = np.random.default_rng(0)
    footers, fsyncs = [], []
    for n in (1, 6):
        d = tmp_path / f"in{n}"
        d.mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), np.uint8)).save(d / f"{i}.png")
        calls.clear()
        out = emobatch.run(d, tmp_path / f"r{n}.parquet")
        fsyncs.append(len(calls))
        footers.append(len(pq.read_metadata(out).metadata[b"emobatch"]))
        meta = emobatch.read_timeline(out).attrs["emobatch"]
        assert [r["source"] for r in meta["results"]] == [str(d / f"{i}.png") for i in range(n)]
        assert meta["inputs_table"] == f"r{n}.inputs.parquet"
    assert fsyncs[0] == fsyncs[1], fsyncs
    assert abs(footers[1] - footers[0]) < 50, footers  # counts, not records


def test_a_file_where_the_inputs_table_goes_is_never_replaced(tmp_path):
    """Item 22's inputs table is a new sibling of --out: a run on `q.inputs.parquet`, then
    one on `q.parquet`, must not replace the first run's timeline with its table."""
    assert cli("run", PHOTO, "--out", tmp_path / "q.inputs.parquet", *FAST).returncode == 0
    before = (tmp_path / "q.inputs.parquet").read_bytes()
    r = cli("run", PHOTO, "--out", tmp_path / "q.parquet", *FAST)
    assert r.returncode == 2 and "holds another file" in r.stderr, r.stderr
    assert (tmp_path / "q.inputs.parquet").read_bytes() == before
