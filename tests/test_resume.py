"""Resume after a kill, workers and Dask: the timeline is identical to an uninterrupted run.

Kills happen at exact points of the real code: the run is started in a subprocess by a
script that wraps one store/sink method to SIGKILL (or SIGTERM) its own process after the
Nth call, so "between files", "inside a video" and "during the final write" are hit
deterministically; one test kills at a random moment instead.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import av
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

import emobatch

from conftest import ROOT, SAMPLE, shared_path

CLIP = SAMPLE / "astronaut_clip.mp4"
PHOTO = SAMPLE / "astronaut.jpg"
# 0.4 s of the 2 s, 15 fps sample clip: a checkpoint every 6 frames (not a multiple of the
# 8-frame classifier batch), the last one on the last frame: 6 chunks a clip, the last empty;
# a face classified every other frame, so checkpoints also carry the classify schedule's
# state (a tracked face's last probabilities) across a kill
RUN_ARGS = ("--checkpoint-every", "0.4", "--classify-every", "2", "--quiet")

HOOKS = Path(__file__).with_name("fault_hooks.py")


def cli(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emobatch", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def cli_killed_at(target: str, calls: int, *args, sig: str = "SIGKILL") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HOOKS), target, str(calls), sig, *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A photo and two clips (a, b): three inputs, two of them videos of 4 chunks."""
    d = tmp_path_factory.mktemp("inputs")
    shutil.copy(PHOTO, d / "0_photo.jpg")
    shutil.copy(CLIP, d / "a_clip.mp4")
    shutil.copy(CLIP, d / "b_clip.mp4")
    return d


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> tuple[pd.DataFrame, Path, pd.DataFrame]:
    """The uninterrupted run: its timeline, annotate folder and saved embeddings."""
    d = tmp_path_factory.mktemp("reference")
    r = cli("run", inputs, "--out", d / "r.parquet", "--annotate", d / "ann",
            "--save-embeddings", d / "emb.parquet", *RUN_ARGS)
    assert r.returncode == 0, r.stderr
    df = pd.read_parquet(d / "r.parquet")
    # every face has its person (made at publish from the stores' track embeddings), so the
    # resumed, multi-process and Dask runs below are compared on person ids too
    assert df.person[df.face.notna()].notna().all() and df.person.nunique() == 3
    return df, d / "ann", pd.read_parquet(d / "emb.parquet")


def frame_times(mp4: Path) -> list[int]:
    with av.open(str(mp4)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        return [f.pts for f in c.decode(video=0)]


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def same_embeddings(path: Path, ref: pd.DataFrame) -> None:
    """The saved embeddings equal the reference's bit for bit (the track's crops, chosen
    across checkpoints, and their person)."""
    got = pd.read_parquet(path)
    same_rows(got.drop(columns="embedding"), ref.drop(columns="embedding"))
    np.testing.assert_array_equal(np.stack(got.embedding), np.stack(ref.embedding))


def assert_same_run(out: Path, ann: Path, reference, emb: Path | None = None) -> None:
    df, ref_ann, ref_emb = reference
    same_rows(pd.read_parquet(out), df)
    if emb is not None:
        same_embeddings(emb, ref_emb)
    # no input failed: no errors table (a resumed run leaves no stale one either)
    assert not out.with_name(f"{out.stem}.errors.csv").exists()
    for name in ("a_clip.mp4", "b_clip.mp4"):  # complete: every frame once, same times
        times = frame_times(ann / name)
        assert times == frame_times(ref_ann / name) and len(set(times)) == 30
    for name in ("0_photo.jpg", "a_clip.mp4", "b_clip.mp4"):  # drawn and encoded as the
        assert (ann / name).read_bytes() == (ref_ann / name).read_bytes()  # reference's
    assert not out.with_name(f".{out.name}.emobatch").exists()  # the run's folder is gone
    assert not list(out.parent.rglob("*.emobatch-tmp"))


@pytest.mark.parametrize("target,calls", [
    ("finish", 2),    # between files: the photo and clip a are done
    ("chunk", 3),     # inside clip a, after its second checkpoint (the photo is 1 chunk)
    ("chunk", 10),    # inside clip b, after its third checkpoint (a clip is 6 chunks)
    ("part", 5),      # inside clip a, its third chunk's rows written, its checkpoint not
    #                   (the photo's chunk writes its face's embedding, then its rows)
    ("publish", 2),   # during the final write of the timeline
])
def test_sigkill_then_resume_is_identical(inputs, reference, tmp_path, target, calls):
    out, ann, emb = tmp_path / "r.parquet", tmp_path / "ann", tmp_path / "emb.parquet"
    args = ("--out", out, "--annotate", ann, "--save-embeddings", emb, *RUN_ARGS)
    r = cli_killed_at(target, calls, "run", inputs, *args)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert not out.exists()  # nothing half-written under the final name
    r = cli("run", inputs, "--resume", *args)
    assert r.returncode == 0, r.stderr
    assert_same_run(out, ann, reference, emb)


def test_a_kill_while_drawing_keeps_the_outputs_drawn(inputs, reference, tmp_path):
    """Killed after the photo's annotated copy was drawn (the inputs all done, the persons
    made): the resumed run draws only the clips; the photo's copy stays the file it was."""
    out, ann, emb = tmp_path / "r.parquet", tmp_path / "ann", tmp_path / "emb.parquet"
    args = ("--out", out, "--annotate", ann, "--save-embeddings", emb, *RUN_ARGS)
    r = cli_killed_at("annotated", 1, "run", inputs, *args)
    assert r.returncode == -signal.SIGKILL, r.stderr
    drawn = [p.name for p in ann.iterdir() if not p.name.startswith(".")]  # not its lock
    assert drawn == ["0_photo.jpg"] and not out.exists()
    before = (ann / "0_photo.jpg").stat()
    r = cli("run", inputs, "--resume", *args)
    assert r.returncode == 0, r.stderr
    after = (ann / "0_photo.jpg").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    meta = emobatch.read_timeline(out).attrs["emobatch"]
    assert meta["resume"]["reused"] == [str(inputs / n) for n in ("0_photo.jpg", "a_clip.mp4",
                                                                   "b_clip.mp4")]
    assert_same_run(out, ann, reference, emb)


def test_resume_continues_mid_video_and_skips_finished_inputs(inputs, reference, tmp_path):
    out, ann = tmp_path / "r.parquet", tmp_path / "ann"
    cli_killed_at("chunk", 10, "run", inputs, "--out", out, "--annotate", ann, *RUN_ARGS)
    r = cli("run", inputs, "--out", out, "--annotate", ann, "--resume", *RUN_ARGS)
    assert r.returncode == 0, r.stderr
    meta = emobatch.read_timeline(out).attrs["emobatch"]
    assert meta["resumed_inputs"] == 1  # clip b continued after its third checkpoint
    results = {Path(r["source"]).name: r for r in meta["results"]}
    assert results["b_clip.mp4"]["resumed_from"] == 18 and results["b_clip.mp4"]["frames"] == 30


def test_sigterm_keeps_finished_work_for_resume(inputs, reference, tmp_path):
    out, ann = tmp_path / "r.parquet", tmp_path / "ann"
    r = cli_killed_at("chunk", 4, "run", inputs, "--out", out, "--annotate", ann, *RUN_ARGS,
                      sig="SIGTERM")
    assert r.returncode == 143, r.stderr
    assert "terminated" in r.stderr and "--resume" in r.stderr
    partial = pd.read_parquet(tmp_path / "r.partial.parquet")
    df = reference[0].iloc[:len(partial)].reset_index(drop=True)
    # the photo and clip a's rows so far, exactly as in the full run; persons only where
    # the track had ended (the photo's face): clip a's one track was still live
    same_rows(partial.drop(columns="person"), df.drop(columns="person"))
    photo = partial.source.str.endswith("0_photo.jpg")
    assert partial.person[photo].tolist() == df.person[photo].tolist() == ["p1"]
    assert partial.person[~photo].isna().all()
    assert len(partial) >= 1 + 18 and not out.exists()
    assert not list(tmp_path.rglob("*.emobatch-tmp"))
    r = cli("run", inputs, "--out", out, "--annotate", ann, "--resume", *RUN_ARGS)
    assert r.returncode == 0, r.stderr
    assert_same_run(out, ann, reference)
    assert not (tmp_path / "r.partial.parquet").exists()  # superseded by the full timeline


def test_unfinished_run_is_never_mixed_in_silently(inputs, tmp_path):
    out = tmp_path / "r.parquet"
    cli_killed_at("finish", 1, "run", inputs, "--out", out, *RUN_ARGS)
    r = cli("run", inputs, "--out", out, *RUN_ARGS)
    assert r.returncode == 2 and "--resume" in r.stderr and "delete" in r.stderr
    assert not out.exists()


def test_resume_refuses_other_settings(inputs, tmp_path):
    out = tmp_path / "r.parquet"
    cli_killed_at("finish", 1, "run", inputs, "--out", out, *RUN_ARGS)
    state = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    r = cli("run", inputs, "--out", out, "--resume", "--every", "2", *RUN_ARGS)
    assert r.returncode == 2 and "differ" in r.stderr and "every" in r.stderr
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == state  # untouched


def test_a_run_folder_of_an_older_emobatch_is_refused_in_words(tmp_path):
    """A manifest without the resume key (written before it was recorded) and another
    fingerprint: --resume says so, and leaves the folder as it was."""
    import json

    from emobatch.batch.store import RunStore
    from emobatch.errors import UsageError
    from emobatch.timeline import TimelinePaths

    paths = TimelinePaths(tmp_path / "r.parquet")
    paths.run_dir.joinpath("items").mkdir(parents=True)
    old = {"fingerprint": "0" * 16, "started": "then", "settings": {"every": 1}, "inputs": []}
    (paths.run_dir / "manifest.json").write_text(json.dumps(old))
    with pytest.raises(UsageError, match="written by an older emobatch"):
        RunStore(paths).open("1" * 16, True, {"settings": {"every": 1}, "resume_key": {}})
    assert json.loads((paths.run_dir / "manifest.json").read_text()) == old


def test_random_kill_inside_a_long_video(tmp_path):
    video = shared_path("media", "videos", "face_recognition_short_hamilton_clip.mp4")
    args = ("--checkpoint-every", "2", "--quiet")
    full = tmp_path / "full.parquet"
    assert cli("run", video, "--out", full, *args).returncode == 0
    out = tmp_path / "k.parquet"
    proc = subprocess.Popen([sys.executable, "-m", "emobatch", "run", str(video), "--out",
                             str(out), *args], cwd=ROOT, stderr=subprocess.DEVNULL)
    items = tmp_path / ".k.parquet.emobatch" / "items"
    deadline = time.monotonic() + 300
    while not list(items.glob("*/state-00001.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.7)  # somewhere inside the third chunk
    proc.kill()
    assert proc.wait() == -signal.SIGKILL  # killed mid-run, not finished
    assert cli("run", video, "--out", out, "--resume", *args).returncode == 0
    same_rows(pd.read_parquet(out), pd.read_parquet(full))
    import emobatch

    (result,) = emobatch.read_timeline(out).attrs["emobatch"]["results"]
    assert result["resumed_from"] >= 2 * 60  # continued after its second checkpoint


def test_resume_with_every_n(inputs, tmp_path):
    args = ("--every", "2", *RUN_ARGS)  # checkpoints every 3 processed frames
    full = tmp_path / "full.parquet"
    assert cli("run", inputs, "--out", full, *args).returncode == 0
    out = tmp_path / "r.parquet"
    assert cli_killed_at("chunk", 4, "run", inputs, "--out", out, *args).returncode < 0
    assert cli("run", inputs, "--out", out, "--resume", *args).returncode == 0
    df = pd.read_parquet(out)
    same_rows(df, pd.read_parquet(full))
    assert sorted(df[df.source.str.endswith("a_clip.mp4")].frame.unique()) == list(range(0, 30, 2))


def test_two_workers_equal_one(inputs, reference, tmp_path):
    out, ann, emb = tmp_path / "r.parquet", tmp_path / "ann", tmp_path / "emb.parquet"
    r = cli("run", inputs, "--out", out, "--annotate", ann, "--workers", "2",
            "--save-embeddings", emb, *RUN_ARGS)
    assert r.returncode == 0, r.stderr
    assert "summary" in r.stderr
    assert_same_run(out, ann, reference, emb)


def test_dask_local_cluster_equals_one_process(inputs, reference, tmp_path):
    distributed = pytest.importorskip("distributed")
    import emobatch

    out, ann, emb = tmp_path / "r.parquet", tmp_path / "ann", tmp_path / "emb.parquet"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:
        emobatch.run(inputs, out=out, annotate=ann, scheduler=cluster.scheduler_address,
                     checkpoint_every=0.4, classify_every=2, save_embeddings=emb)  # as RUN_ARGS
    assert_same_run(out, ann, reference, emb)
    assert emobatch.read_timeline(out).attrs["emobatch"]["runner"] == "dask"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dask_cluster(workers: int, env: dict | None = None) -> Iterator[tuple[str, list]]:
    """A real `dask scheduler` and `workers` one-thread `dask worker`s on a free local port:
    (address, [scheduler, worker nannies...]); all stopped (SIGTERM, then SIGKILL) after."""
    pytest.importorskip("distributed")
    dask_cli = Path(sys.executable).with_name("dask")
    if not dask_cli.exists():
        pytest.skip("the dask command is not installed")
    port = str(_free_port())
    addr, quiet = f"tcp://127.0.0.1:{port}", dict(stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.DEVNULL, env=env)
    procs = [subprocess.Popen([str(dask_cli), "scheduler", "--host", "127.0.0.1", "--port", port,
                               "--dashboard-address", ":0"], **quiet)]
    try:
        for _ in range(workers):
            procs.append(subprocess.Popen([str(dask_cli), "worker", addr, "--nthreads", "1",
                                           "--nworkers", "1", "--dashboard-address", ":0"], **quiet))
        yield addr, procs
    finally:
        for p in procs[::-1]:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def _wait_for_a_finished_input(run_dir: Path) -> None:
    deadline = time.monotonic() + 300
    while not list((run_dir / "items").glob("*/done.json")) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_real_dask_cluster_survives_a_killed_worker(inputs, reference, tmp_path):
    import psutil

    many = tmp_path / "many"
    many.mkdir()
    for i in range(6):
        shutil.copy(CLIP, many / f"clip{i}.mp4")
    single = tmp_path / "single.parquet"
    assert cli("run", many, "--out", single, *RUN_ARGS).returncode == 0

    with dask_cluster(2) as (addr, procs):
        out = tmp_path / "r.parquet"
        run = subprocess.Popen([sys.executable, "-m", "emobatch", "run", str(many), "--out",
                                str(out), "--scheduler", addr, *RUN_ARGS], cwd=ROOT,
                               stderr=subprocess.PIPE, text=True)
        _wait_for_a_finished_input(tmp_path / ".r.parquet.emobatch")
        victims = psutil.Process(procs[1].pid).children(recursive=True)
        assert victims, "the dask worker process runs under its nanny"
        for v in victims:
            v.kill()  # SIGKILL the worker mid-run; its nanny starts a new one
        _, err = run.communicate(timeout=600)
        assert run.returncode == 0, err
        same_rows(pd.read_parquet(out), pd.read_parquet(single))


def test_lost_dask_scheduler_exits_3_and_resume_finishes_on_a_new_one(tmp_path):
    """The scheduler and its worker killed (SIGKILL) while an input is being processed: exit 3
    with one line saying the work is kept for --resume, the finished input kept; --resume on a
    new cluster completes the timeline; no emobatch temp folder is left in the temp dir."""
    import psutil

    folder, tmp = tmp_path / "in", tmp_path / "tmp"
    folder.mkdir(), tmp.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        shutil.copy(CLIP, folder / name)
    env = dict(os.environ, TMPDIR=str(tmp))
    out = tmp_path / "r.parquet"
    args = [sys.executable, "-m", "emobatch", "run", str(folder), "--out", str(out), "--quiet",
            "--every", "3"]
    with dask_cluster(1, env) as (addr, procs):
        run = subprocess.Popen([*args, "--scheduler", addr], cwd=ROOT, env=env,
                               stderr=subprocess.PIPE, text=True)
        _wait_for_a_finished_input(tmp_path / ".r.parquet.emobatch")
        worker = psutil.Process(procs[1].pid)
        for p in [procs[0], worker, *worker.children(recursive=True)]:
            p.kill()  # the whole cluster gone mid-task, as when its job is cancelled
        _, err = run.communicate(timeout=120)
    assert run.returncode == 3, err
    assert "lost the Dask scheduler" in err and "--resume" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert list((tmp_path / ".r.parquet.emobatch" / "items").glob("*/done.json"))
    assert not out.exists()

    with dask_cluster(1, env) as (addr, _):
        r = subprocess.run([*args, "--scheduler", addr, "--resume"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    df = pd.read_parquet(out)
    assert df.groupby(df["source"].map(lambda s: Path(s).name))["frame"].nunique().to_dict() == {
        "a.mp4": 10, "b.mp4": 10, "c.mp4": 10}
    assert not [p for p in tmp.rglob("*") if p.name.startswith("emobatch")]


def test_unreachable_dask_scheduler_exits_2_within_seconds(tmp_path):
    pytest.importorskip("distributed")
    out = tmp_path / "r.parquet"
    t0 = time.monotonic()
    r = cli("run", PHOTO, "--out", out, "--quiet", "--scheduler", f"tcp://127.0.0.1:{_free_port()}")
    seconds = time.monotonic() - t0
    assert r.returncode == 2 and "cannot reach the Dask scheduler" in r.stderr, r.stderr
    assert seconds < 30, seconds  # a hang guard (it waited 60 s for a connection), not a benchmark
    assert list(tmp_path.iterdir()) == []


def test_stage_states_round_trip_exactly():
    from emobatch.faces import state_json as state
    from emobatch.faces.tracking.smoother import Smoother
    from emobatch.faces.tracking.tracker import Tracker
    from emobatch.types import FaceBatch

    rng = np.random.default_rng(0)
    tracker, smoother = Tracker(), Smoother(0.3)
    for t in range(5):
        xy = np.array([[10, 10, 50, 60], [100, 20, 140, 70]], np.float32) + t * 1.7
        p = rng.random((2, 7)).astype(np.float32)
        p /= p.sum(1, keepdims=True)
        faces = FaceBatch(xy, np.array([0.99, 0.97], np.float32), np.zeros((2, 5, 2), np.float32),
                          probs=p, probs_raw=p)
        faces = smoother.smooth(tracker.track(faces, t / 30), t / 30)
    t2, s2 = Tracker(), Smoother(0.3)
    t2.load_state_dict(state.loads(state.dumps(tracker.state_dict())))
    s2.load_state_dict(state.loads(state.dumps(smoother.state_dict())))
    nxt = FaceBatch(xy + 2, np.array([0.99, 0.97], np.float32), np.zeros((2, 5, 2), np.float32),
                    probs=p, probs_raw=p)
    a = smoother.smooth(tracker.track(nxt, 5 / 30), 5 / 30)
    b = s2.smooth(t2.track(nxt, 5 / 30), 5 / 30)
    assert np.array_equal(a.track, b.track) and np.array_equal(a.probs, b.probs)


def test_a_changed_input_is_redone_not_resumed(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    img = Image.open(PHOTO).convert("RGB")
    # uncompressed PNGs of one size: the mirrored photo is a same-size replacement
    img.save(d / "a.png", compress_level=0)
    img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "mirrored.png", compress_level=0)
    shutil.copy(PHOTO, d / "b.jpg")
    out = tmp_path / "r.parquet"
    r = cli_killed_at("finish", 1, "run", d, "--out", out, "--quiet")  # a.png done, b.jpg not
    assert r.returncode == -signal.SIGKILL, r.stderr
    before = (d / "a.png").stat()
    shutil.copyfile(tmp_path / "mirrored.png", d / "a.png")  # its old mtime restored
    os.utime(d / "a.png", ns=(before.st_atime_ns, before.st_mtime_ns))
    after = (d / "a.png").stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    r = cli("run", d, "--out", out, "--resume", "--quiet")
    assert r.returncode == 0, r.stderr
    assert f"changed since the interrupted run, redone: {d / 'a.png'}" in r.stderr
    meta = emobatch.read_timeline(out).attrs["emobatch"]
    assert meta["changed_inputs"] == [str(d / "a.png")]
    fresh = tmp_path / "fresh.parquet"
    assert cli("run", d, "--out", fresh, "--quiet").returncode == 0
    df, ref = pd.read_parquet(out), pd.read_parquet(fresh)
    assert ref.loc[ref["source"].str.endswith("a.png"), "face"].notna().any()
    same_rows(df, ref)  # the mirrored photo's rows, not the stale ones
    assert emobatch.read_timeline(fresh).attrs["emobatch"]["changed_inputs"] == []


def test_many_small_inputs_publish_few_row_groups_also_after_resume(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):  # tiny faceless photos: one row each
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), np.uint8)).save(d / f"{i:02d}.png")
    out = tmp_path / "r.parquet"
    r = cli_killed_at("finish", 20, "run", d, "--out", out, "--quiet")
    assert r.returncode == -signal.SIGKILL, r.stderr
    r = cli("run", d, "--out", out, "--resume", "--quiet")
    assert r.returncode == 0, r.stderr
    f = pq.ParquetFile(out)
    assert f.metadata.num_rows == 40 and f.num_row_groups == 1
    assert list(f.read().column("source").to_pylist()) == [str(d / f"{i:02d}.png") for i in range(40)]


def test_resume_says_what_it_reused_and_what_it_redid(inputs, reference, tmp_path):
    """Item 25: a resume's metadata said resumed_inputs 0 and resumed_from null for every
    input, although the finished ones were kept, and a video stopped before its first
    checkpoint restarted from frame 0 silently."""
    out, ann = tmp_path / "r.parquet", tmp_path / "ann"
    # the photo finished (its face's embedding, then its rows); clip a's first chunk of rows
    # stored, its checkpoint not
    r = cli_killed_at("part", 3, "run", inputs, "--out", out, "--annotate", ann, *RUN_ARGS)
    assert r.returncode == -signal.SIGKILL, r.stderr
    r = cli("run", inputs, "--out", out, "--annotate", ann, "--resume", *RUN_ARGS)
    assert r.returncode == 0, r.stderr
    assert_same_run(out, ann, reference)
    meta = emobatch.read_timeline(out).attrs["emobatch"]
    assert meta["resume"] == {"reused": [str(inputs / "0_photo.jpg")], "continued": {},
                              "redone": [str(inputs / "a_clip.mp4")]}
    assert "resumed: 1 input(s) finished before, kept; 0 video(s)" in r.stderr
    assert f"redone from the start: {inputs / 'a_clip.mp4'}" in r.stderr


def test_store_files_cut_short_by_a_system_crash_are_redone(inputs, reference, tmp_path):
    """Item 22: a run's store is no longer fsynced (most of each input's overhead in runs
    of many photos), so after a system crash a file in it may be empty. --resume removes
    what cannot be read: the photo (its done.json empty) is redone, clip a continues from
    its last intact checkpoint (its newest state empty), and the run equals the reference."""
    out, ann = tmp_path / "r.parquet", tmp_path / "ann"
    r = cli_killed_at("chunk", 3, "run", inputs, "--out", out, "--annotate", ann, *RUN_ARGS)
    assert r.returncode == -signal.SIGKILL, r.stderr
    items = list((tmp_path / ".r.parquet.emobatch" / "items").iterdir())
    photo = next(d for d in items if (d / "done.json").is_file())
    clip = next(d for d in items if sorted(d.glob("state-*.json")))
    (photo / "done.json").write_bytes(b"")
    sorted(clip.glob("state-*.json"))[-1].write_bytes(b"")
    r = cli("run", inputs, "--out", out, "--annotate", ann, "--resume", *RUN_ARGS)
    assert r.returncode == 0, r.stderr
    assert_same_run(out, ann, reference)
    meta = emobatch.read_timeline(out).attrs["emobatch"]
    assert str(inputs / "0_photo.jpg") in meta["resume"]["redone"]
    assert list(meta["resume"]["continued"]) == [str(inputs / "a_clip.mp4")]
