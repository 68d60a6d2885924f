"""Fault injection on the output side: for each fault, the exit status and message, no file
under a final name that does not read back completely, no original input modified, no temp
file left behind, and the finished rows where the message says."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import emobatch
from conftest import ROOT, SAMPLE

CLIP = SAMPLE / "astronaut_clip.mp4"
PHOTO = SAMPLE / "astronaut.jpg"
HOOKS = Path(__file__).with_name("fault_hooks.py")
FAST = ("--every", "3", "--quiet")


def cli(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emobatch", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def no_temp_files(*folders: Path) -> bool:
    return not any(list(f.rglob("*.emobatch-tmp")) for f in folders if f.exists())


@pytest.fixture()
def inputs(tmp_path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(PHOTO, d / "photo.jpg")
    shutil.copy(CLIP, d / "clip.mp4")
    return d


@pytest.fixture()
def untouched(inputs):
    """Fails the test if any input file changed."""
    before = checksums(inputs)
    yield
    assert checksums(inputs) == before, "an original input was modified"


@pytest.fixture()
def mount(tmp_path):
    """mount(options) -> a fresh tmpfs mounted with those options; skips where the test
    cannot mount (not root, no mount namespace)."""
    mounted = []

    def _mount(options: str) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(point)
        return point

    yield _mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_disk_full_mid_run_then_resume(inputs, untouched, mount, tmp_path):
    full = tmp_path / "ref.parquet"
    assert cli("run", inputs, "--out", full, *FAST).returncode == 0
    disk = mount("size=96k")
    out, ann = disk / "r.parquet", disk / "ann"
    r = cli("run", inputs, "--out", out, "--annotate", ann, *FAST)
    assert r.returncode == 3, r.stderr
    assert "No space left on device" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists() and no_temp_files(disk)
    # room again: --resume finishes from what was kept, and nothing was lost
    subprocess.run(["mount", "-o", "remount,size=20m", str(disk)], check=True)
    r = cli("run", inputs, "--out", out, "--annotate", ann, "--resume", *FAST)
    assert r.returncode == 0, r.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(full), check_exact=True)
    assert (ann / "clip.mp4").is_file() and (ann / "photo.jpg").is_file()
    assert no_temp_files(disk)


def test_read_only_output_folder_refused_before_any_work(inputs, untouched, mount):
    ro = mount("ro,size=1m")
    r = cli("run", inputs, "--out", ro / "r.parquet", *FAST)
    assert r.returncode == 2 and "cannot write in" in r.stderr
    r = cli("run", inputs, "--out", inputs.parent / "r.parquet", "--annotate", ro / "ann", *FAST)
    assert r.returncode == 2 and "--annotate" in r.stderr
    assert not (inputs.parent / "r.parquet").exists()


@pytest.mark.parametrize("case", ["out_is_dir", "parent_is_file", "out_is_input",
                                  "annotate_is_input_dir", "annotate_inside_input",
                                  "annotate_contains_input", "annotate_is_a_file_inputs_folder",
                                  "report_is_out", "report_is_input"])
def test_unsafe_outputs_refused_before_any_work(inputs, tmp_path, case):
    (tmp_path / "afile").write_text("x")
    out, ann = tmp_path / "r.parquet", None
    walked = [inputs]
    if case == "out_is_dir":
        out = tmp_path / "adir.parquet"
        out.mkdir()
    elif case == "parent_is_file":
        out = tmp_path / "afile" / "r.parquet"
    elif case == "out_is_input":
        (inputs / "old.csv").write_text("keep me")
        out, walked = inputs / "old.csv", [inputs, inputs / "old.csv"]
    elif case == "annotate_is_input_dir":
        ann = inputs
    elif case == "annotate_inside_input":
        ann = inputs / "annotated"
    elif case == "annotate_contains_input":
        ann = tmp_path
    elif case == "annotate_is_a_file_inputs_folder":
        (inputs / "clip.avi").write_bytes(CLIP.read_bytes())
        (inputs / "clip.avi.mp4").write_text("a file of the user's, not an input")
        walked, ann = [inputs / "clip.avi"], inputs
    args = ["--annotate", ann] if ann else []
    if case == "report_is_out":
        args = ["--report", out]
    elif case == "report_is_input":
        args = ["--report", inputs / "photo.jpg"]
    before = checksums(tmp_path)
    r = cli("run", *walked, "--out", out, *args, *FAST)
    assert r.returncode == 2, r.stderr
    assert "emobatch:" in r.stderr and "Traceback" not in r.stderr
    assert checksums(tmp_path) == before  # nothing written anywhere
    assert not (inputs / "annotated").exists()


def test_annotated_name_collisions_are_renamed_and_reported(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(CLIP, d / "x.avi")        # annotated as x.avi.mp4 ...
    shutil.copy(CLIP, d / "x.avi.mp4")    # ... which is also this one's own name
    before = checksums(d)
    ann = tmp_path / "ann"
    r = cli("run", d, "--out", tmp_path / "r.parquet", "--annotate", ann, *FAST)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in ann.iterdir()) == ["x.avi.mp4", "x.avi~2.mp4"]
    assert "annotated name taken" in r.stderr and "x.avi~2.mp4" in r.stderr
    meta = emobatch.read_timeline(tmp_path / "r.parquet").attrs["emobatch"]
    assert meta["annotated_renamed"] == {str(d / "x.avi.mp4"): str(ann / "x.avi~2.mp4")}
    assert checksums(d) == before


def test_a_second_run_on_the_same_out_is_refused_while_the_first_lives(inputs, untouched, tmp_path):
    out, go_on = tmp_path / "r.parquet", tmp_path / "go-on"
    # the first run holds still after its first input, alive and holding the lock, until
    # the second one has been answered
    first = subprocess.Popen([sys.executable, str(HOOKS), "finish", "1", f"waitfor:{go_on}",
                              "run", str(inputs), "--out", str(out), *FAST], cwd=ROOT,
                             stderr=subprocess.PIPE, text=True)
    done = tmp_path / ".r.parquet.emobatch" / "items"
    deadline = time.monotonic() + 120
    while not list(done.glob("*/done.json")) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    second = cli("run", inputs, "--out", out, *FAST)
    go_on.touch()
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert second.returncode == 2 and "another emobatch run" in second.stderr, second.stderr
    df = pd.read_parquet(out)  # the first run's timeline, complete
    assert df["source"].str.endswith("clip.mp4").sum() >= 9 and no_temp_files(inputs.parent)
    # a dead run holds no lock: after a SIGKILL the next run may take over (with --resume)
    r = subprocess.run([sys.executable, str(HOOKS), "finish", "1", "SIGKILL", "run", str(inputs),
                        "--out", str(out), "--overwrite", *FAST], cwd=ROOT, capture_output=True,
                       timeout=600)
    assert r.returncode < 0
    assert cli("run", inputs, "--out", out, "--resume", *FAST).returncode == 0


def test_output_folder_removed_mid_run(inputs, untouched, tmp_path):
    outdir = tmp_path / "results"
    r = subprocess.run([sys.executable, str(HOOKS), "finish", "1", f"rmtree:{outdir}", "run",
                        str(inputs), "--out", str(outdir / "r.parquet"), *FAST], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 3, r.stderr
    assert "cannot write" in r.stderr and "Traceback" not in r.stderr
    assert not (outdir / "r.parquet").exists()


def test_sigterm_from_outside(inputs, untouched, tmp_path):
    out = tmp_path / "r.parquet"
    proc = subprocess.Popen([sys.executable, "-m", "emobatch", "run", str(inputs), "--out",
                             str(out), "--every", "1", "--checkpoint-every", "0.5", "--quiet"],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    items = tmp_path / ".r.parquet.emobatch" / "items"
    deadline = time.monotonic() + 120
    while not list(items.glob("*/state-00000.json")) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.terminate()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    partial = pd.read_parquet(tmp_path / "r.partial.parquet")  # reads back completely
    assert len(partial) >= 8 and not out.exists() and no_temp_files(tmp_path)  # clip first


def test_stale_temp_files_of_a_dead_run_are_removed(inputs, tmp_path):
    from emobatch.atomic import TEMP_SUFFIX, temp_path

    out, ann = tmp_path / "r.parquet", tmp_path / "ann"
    ann.mkdir()
    dead = out.with_name(temp_path(out).name.replace(f"-{os.getpid()}-", "-999999999-"))
    dead.write_bytes(b"half a parquet file")
    container = out.with_name(f".r.parquet.otherhost-12-abcd{TEMP_SUFFIX}")  # another host's
    container.write_bytes(b"x")
    dead_ann = ann / dead.name.replace(".r.parquet.", ".clip.mp4.")
    dead_ann.write_bytes(b"half an mp4")
    alive_ann = temp_path(ann / "photo.jpg")  # this test's process: alive, may share --annotate
    alive_ann.write_bytes(b"x")
    assert dead.name.endswith(TEMP_SUFFIX)
    assert cli("run", inputs, "--out", out, "--annotate", ann, *FAST).returncode == 0
    # beside --out only the lock holder writes: every leftover goes; under --annotate only
    # those of dead processes of this host
    assert not dead.exists() and not container.exists() and not dead_ann.exists()
    assert alive_ann.exists()
    alive_ann.unlink()


@pytest.mark.parametrize("args", [["--every", "0"], ["--batch-size", "0"],
                                  ["--detect-scale", "0"], ["--thresholds", "2", "2", "2"],
                                  ["--min-score", "5"], ["--smooth", "-1"], ["--smooth", "inf"],
                                  ["--smooth", "nan"], ["--workers", "0"],
                                  ["--checkpoint-every", "0"], ["--detect-every", "0"]])
def test_usage_errors_exit_2_before_any_work(inputs, tmp_path, args):
    out = tmp_path / "r.parquet"
    r = cli("run", inputs, "--out", out, *args)
    assert r.returncode == 2 and "must be" in r.stderr, (args, r.stderr)
    assert sorted(tmp_path.iterdir()) == [inputs]


@pytest.mark.parametrize("kwargs", [{"every": 0}, {"quality": "bogus"}, {"detect_every": 0},
                                    {"min_score": 1.5}, {"thresholds": (0.6, 0.7, -1)},
                                    {"tta": "sideways"}, {"workers": 0},
                                    {"classify_every": -1}, {"classify_every": 1.5},
                                    {"smooth_tau": float("inf")}])
def test_api_validates_before_any_work(tmp_path, kwargs):
    with pytest.raises(ValueError):
        emobatch.run(PHOTO, out=tmp_path / "r.parquet", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_a_bug_on_one_input_keeps_its_traceback_and_the_run_goes_on(inputs, tmp_path):
    """An unexpected exception while one photo is processed: its error row carries the
    traceback (printed with --verbose), the video after it is processed as usual."""
    def run(out: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(HOOKS), "still", "1", "raise", "run",
                               str(inputs / "photo.jpg"), str(inputs / "clip.mp4"), "--out",
                               str(out), *FAST, *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=600)

    out = tmp_path / "r.parquet"
    r = run(out, "--verbose")
    assert r.returncode == 1, r.stderr
    errs = pd.read_csv(out.with_name("r.errors.csv"), keep_default_na=False)
    assert list(errs["source"]) == [str(inputs / "photo.jpg")]
    assert errs["error"][0] == "RuntimeError: fault injected after call 1 of still"
    tb = errs["traceback"][0]
    assert tb.startswith("Traceback (most recent call last):")
    assert "in process_item" in tb and "fault_hooks.py" in tb and tb.rstrip().endswith(
        "RuntimeError: fault injected after call 1 of still")
    assert all(line in r.stderr for line in tb.splitlines())  # --verbose prints it
    df = pd.read_parquet(out)
    assert set(df["source"]) == {str(inputs / "clip.mp4")} and df["face"].notna().any()
    quiet = run(tmp_path / "q.parquet")
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    assert "fault injected" in quiet.stderr and "--verbose" in quiet.stderr


def test_disk_full_while_publishing_leaves_no_unreadable_file(inputs, untouched, mount, tmp_path):
    full = tmp_path / "ref.parquet"
    assert cli("run", inputs, "--out", full, *FAST).returncode == 0
    disk = mount("size=8m")
    out = disk / "r.parquet"
    # the disk fills up once the final timeline is being written
    r = subprocess.run([sys.executable, str(HOOKS), "publish", "1", f"fill:{disk}", "run",
                        str(inputs), "--out", str(out), *FAST], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 3, r.stderr
    assert "No space left on device" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in disk.iterdir()) == [".r.parquet.emobatch", "filler"]
    (disk / "filler").unlink()
    r = cli("run", inputs, "--out", out, "--resume", *FAST)
    assert r.returncode == 0, r.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(full), check_exact=True)
    # no failure: no errors table
    assert sorted(p.name for p in disk.iterdir()) == ["r.inputs.parquet", "r.parquet"]


def test_sigterm_while_publishing_keeps_every_finished_row(inputs, untouched, tmp_path):
    full = tmp_path / "ref.parquet"
    assert cli("run", inputs, "--out", full, *FAST).returncode == 0
    out = tmp_path / "r.parquet"
    r = subprocess.run([sys.executable, str(HOOKS), "publish", "1", "SIGTERM", "run",
                        str(inputs), "--out", str(out), *FAST], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 143, r.stderr
    partial = tmp_path / "r.partial.parquet"
    assert f"finished rows in {partial}" in r.stderr and not out.exists()
    # every input had finished: the partial timeline holds all their rows, and says so
    pd.testing.assert_frame_equal(pd.read_parquet(partial), pd.read_parquet(full), check_exact=True)
    meta = emobatch.read_timeline(partial).attrs["emobatch"]
    assert "interrupted" in meta and len(meta["results"]) == 2 and no_temp_files(tmp_path)
    r = cli("run", inputs, "--out", out, "--resume", *FAST)
    assert r.returncode == 0, r.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(full), check_exact=True)
    assert not list(tmp_path.glob("r.partial*"))


def test_a_second_ctrl_c_while_the_partial_is_written(inputs, untouched, tmp_path):
    out = tmp_path / "r.parquet"
    # Ctrl-C after the first input (the clip) finished, again while its rows are published
    r = subprocess.run([sys.executable, str(HOOKS), "finish,publish", "1,1", "SIGINT,SIGINT",
                        "run", str(inputs), "--out", str(out), *FAST], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 130, r.stderr
    partial = tmp_path / "r.partial.parquet"
    assert f"finished rows in {partial}" in r.stderr
    # no failure: no errors table
    assert sorted(p.name for p in tmp_path.glob("r.*")) == ["r.partial.inputs.parquet",
                                                            "r.partial.parquet"]
    df = pd.read_parquet(partial)
    assert len(df) >= 9 and df["source"].str.endswith("clip.mp4").all()
    meta = emobatch.read_timeline(partial).attrs["emobatch"]
    assert "interrupted" in meta and [Path(x["source"]).name for x in meta["results"]] == ["clip.mp4"]
    r = cli("run", inputs, "--out", out, "--resume", *FAST)
    assert r.returncode == 0, r.stderr
    # no failure: no errors table; the partial's inputs table went with it
    assert sorted(p.name for p in tmp_path.glob("r.*")) == ["r.inputs.parquet", "r.parquet"]
    assert no_temp_files(tmp_path)


def hooked(target: str, calls: int, action: str, *args) -> subprocess.CompletedProcess:
    """The command with a fault injected (tests/fault_hooks.py)."""
    return subprocess.run([sys.executable, str(HOOKS), target, str(calls), action, "run",
                           *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_ctrl_c_while_the_report_is_written_says_the_timeline_is_complete(tmp_path):
    """Item 20: Ctrl-C during the report said 'continue with --resume' of a complete run."""
    out = tmp_path / "r.parquet"
    r = hooked("report", 1, "SIGINT", PHOTO, "--out", out, "--report", tmp_path / "r.html",
               *FAST)
    assert r.returncode == 130, r.stderr
    assert f"the timeline {out} is complete" in r.stderr and "--resume" not in r.stderr
    assert len(pd.read_parquet(out)) == 1 and not (tmp_path / ".r.parquet.emobatch").exists()


def test_a_closed_stderr_after_a_complete_run_keeps_its_status(tmp_path):
    """Item 20: a reader of stderr gone (`2>&1 | head -1`) made a complete run exit 1."""
    out = tmp_path / "r.parquet"
    proc = subprocess.Popen([sys.executable, "-m", "emobatch", "run", PHOTO, "--out", out,
                             *FAST], cwd=ROOT, stderr=subprocess.PIPE)
    proc.stderr.close()
    assert proc.wait(timeout=600) == 0
    assert len(pd.read_parquet(out)) == 1


def test_an_annotate_folder_removed_mid_run_is_an_error_not_a_listed_file(inputs, tmp_path):
    """Item 20: the --annotate folder deleted after the photo's copy was written gave exit 0
    and metadata listing a file that no longer existed (the clip's is drawn after it)."""
    out, ann = tmp_path / "r.parquet", tmp_path / "ann"
    r = hooked("annotated", 1, f"rmtree:{ann}", inputs / "photo.jpg", inputs / "clip.mp4",
               "--out", out, "--annotate", ann, *FAST)
    assert r.returncode == 1, r.stderr
    meta = emobatch.read_timeline(out).attrs["emobatch"]
    assert all(Path(p).is_file() for p in meta["annotated"].values())
    assert str(inputs / "photo.jpg") not in meta["annotated"]
    errs = pd.read_csv(tmp_path / "r.errors.csv")
    assert list(errs["source"]) == [str(inputs / "photo.jpg")]
    assert "was removed during the run" in errs["error"][0]


def test_too_few_file_descriptors_for_the_workers_is_one_line(inputs, tmp_path):
    """Item 18: `ulimit -n 16` with --workers gave an EMFILE traceback."""
    import resource

    def few_files():
        resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))

    r = subprocess.run([sys.executable, "-m", "emobatch", "run", inputs, "--out",
                        tmp_path / "r.parquet", "--workers", "2", *FAST], cwd=ROOT,
                       capture_output=True, text=True, timeout=600, preexec_fn=few_files)
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr and "too many open files (the limit, ulimit -n, is 16)" in r.stderr


def test_a_low_address_space_limit_is_one_line_before_any_work(inputs, tmp_path):
    """Item 18: `prlimit --as` too low gave a raw ImportError, an abort or an OpenVINO error
    (and at 4 GB a BLAS that spun forever while loading)."""
    import resource

    def little_address_space():
        resource.setrlimit(resource.RLIMIT_AS, (1_000_000_000, resource.RLIM_INFINITY))

    out = tmp_path / "r.parquet"
    r = subprocess.run([sys.executable, "-m", "emobatch", "run", inputs, "--out", out, *FAST],
                       cwd=ROOT, capture_output=True, text=True, timeout=600,
                       preexec_fn=little_address_space)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "address-space limit (ulimit -v, prlimit --as) of 1.0 GB is too low" in r.stderr
    assert not out.exists() and not (tmp_path / ".r.parquet.emobatch").exists()


def test_a_start_that_hangs_under_the_limit_is_a_limit_error(monkeypatch):
    """The child that tries the start under the limit is given up after PROBE_SECONDS."""
    from emobatch.batch import process_tuning
    from emobatch.config import Settings
    from emobatch.errors import LimitError

    monkeypatch.setattr(process_tuning, "address_space_limit", lambda: 4_000_000_000)
    monkeypatch.setattr(process_tuning, "PROBE_SECONDS", 0.05)
    with pytest.raises(LimitError, match="of 4.0 GB is too low .*did not finish in 0.05 s"):
        process_tuning.check_address_space(Settings())


def test_out_of_threads_mid_run_is_one_line_and_keeps_the_work(inputs, tmp_path):
    """Item 18: under a limit the libraries' own errors (pyarrow, OpenVINO: 'Resource
    temporarily unavailable') came out as tracebacks; now one line, exit 3, work kept."""
    out = tmp_path / "r.parquet"
    r = hooked("publish", 1, "raise:Unknown error: Failed to launch worker thread: Resource "
               "temporarily unavailable", inputs, "--out", out, *FAST)
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr and "out of memory or threads" in r.stderr
    assert "rerun with --resume" in r.stderr and not out.exists()
    r = cli("run", inputs, "--out", out, "--resume", *FAST)
    assert r.returncode == 0, r.stderr
    assert len(pd.read_parquet(out)) > 1
