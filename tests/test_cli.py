"""The real `emobatch` command on tiny inputs, via subprocess."""
import subprocess
import sys

import pandas as pd
import pytest

import emobatch
from conftest import ROOT, SAMPLE


def emobatch_cli(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emobatch", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_version():
    r = emobatch_cli("--version")
    assert r.returncode == 0 and emobatch.__version__ in r.stdout


def test_run_sample_csv_and_annotate(tmp_path):
    out, ann = tmp_path / "r.csv", tmp_path / "ann"
    r = emobatch_cli("run", SAMPLE, "--out", out, "--annotate", ann, "--every", "5", "--quiet")
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(out)
    assert set(df["source"].map(lambda s: s.rsplit("/", 1)[-1])) == {"astronaut.jpg", "astronaut_clip.mp4"}
    assert (out.parent / "r.meta.json").is_file() and (ann / "astronaut_clip.mp4").is_file()
    assert "summary" in r.stderr
    assert "skipped" not in r.stderr  # item 27: the sample folder holds only media


def test_bad_inputs_nonzero_exit_but_good_rows_written(tmp_path):
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    out = tmp_path / "r.parquet"
    r = emobatch_cli("run", SAMPLE / "astronaut.jpg", bad, txt, "--out", out, "--quiet")
    assert r.returncode == 1
    for name in ("corrupt.jpg", "notes.txt"):
        assert name in r.stderr
    assert "unsupported file type" in r.stderr
    df = pd.read_parquet(out)
    assert len(df) == 1 and df["source"].iloc[0].endswith("astronaut.jpg")
    errs = pd.read_csv(tmp_path / "r.errors.csv")
    assert len(errs) == 2


# the real command, in a process that then says which heavy modules it imported
_MAIN_THEN_MODULES = """import sys
from emobatch.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as e:
    rc = e.code
print(' '.join(m for m in ('torch', 'cv2', 'av') if m in sys.modules))
sys.exit(rc)
"""


def test_bad_options_and_missing_inputs_exit_2_before_torch_loads(tmp_path):
    """A newcomer's first mistakes (a bad number, device or weights path, a misspelled
    input) exit 2 with one line naming it, before torch, OpenCV or PyAV load and before any
    output or run folder is written."""
    photo, out, weights_dir = SAMPLE / "astronaut.jpg", tmp_path / "r.parquet", tmp_path / "w"
    weights_dir.mkdir()
    cases = [([photo, "--min-score", "7"], "min_score must be in [0, 1]"),
             ([photo, "--batch-size", "0"], "batch_size must be"),
             ([photo, "--smooth", "-1"], "smooth_tau"),
             ([photo, "--device", "gpu"], "invalid choice"),
             ([photo, "--backend", "onnx"], "invalid choice"),
             ([photo, "--workers", "0"], "--workers must be"),
             ([photo, "--weights", weights_dir], "is a directory, not a weights file"),
             ([photo, tmp_path / "phtoo.jpg"], f"no such file or folder: {tmp_path / 'phtoo.jpg'}"),
             ([tmp_path / "no_such_folder"], "no such file or folder")]
    for args, message in cases:
        r = subprocess.run([sys.executable, "-c", _MAIN_THEN_MODULES, "run", *map(str, args),
                            "--out", str(out), "--quiet"], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
        assert r.stdout.strip() == "", (args, f"imported {r.stdout}")
    assert list(tmp_path.iterdir()) == [weights_dir]  # no timeline, no run folder


def test_api_refuses_missing_inputs_and_keeps_registered_backends(tmp_path):
    from emobatch.errors import UsageError
    from emobatch.faces.emotion import runtimes as backends

    with pytest.raises(UsageError, match="no such file or folder"):
        emobatch.run([SAMPLE / "astronaut.jpg", tmp_path / "gone.mp4"], out=tmp_path / "r.parquet")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UsageError, match="backend must be one of"):
        emobatch.Settings(backend="mine")
    backends.register_backend("mine")(backends.BACKENDS["torch"])
    try:
        assert emobatch.Settings(backend="mine").backend == "mine"
    finally:
        del backends.BACKENDS["mine"]


def test_bad_out_suffix(tmp_path):
    r = emobatch_cli("run", SAMPLE / "astronaut.jpg", "--out", tmp_path / "r.txt")
    assert r.returncode == 2 and ".parquet or .csv" in r.stderr


def test_bad_knobs_rejected(tmp_path):
    for args in (["--detect-scale", "1.5"], ["--every", "0"], ["--detect-every", "0"]):
        r = emobatch_cli("run", SAMPLE / "astronaut.jpg", "--out", tmp_path / "r.parquet", *args)
        assert r.returncode != 0 and "must be" in r.stderr, args
        assert not (tmp_path / "r.parquet").exists()


def test_run_writes_report_and_blurs_faces(tmp_path):
    import cv2

    out, ann, html = tmp_path / "r.parquet", tmp_path / "ann", tmp_path / "report.html"
    r = emobatch_cli("run", SAMPLE, "--out", out, "--annotate", ann, "--blur-faces",
                     "--report", html, "--every", "5", "--quiet")
    assert r.returncode == 0, r.stderr
    page = html.read_text()
    assert "astronaut_clip.mp4" in page and "<img" not in page  # blurred run: no thumbnails
    df = pd.read_parquet(out)
    x1, y1, x2, y2 = df[df["source"].str.endswith(".jpg")][["x1", "y1", "x2", "y2"]].iloc[0]
    dx, dy = (x2 - x1) * 0.15, (y2 - y1) * 0.15  # inside the drawn box lines
    x1, y1, x2, y2 = int(x1 + dx), int(y1 + dy), int(x2 - dx), int(y2 - dy)
    detail = [cv2.Laplacian(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)[y1:y2, x1:x2], cv2.CV_64F).var()
              for p in (SAMPLE / "astronaut.jpg", ann / "astronaut.jpg")]
    assert detail[1] < 0.2 * detail[0]  # the face in the annotated copy is unrecognisable
    meta = emobatch.read_timeline(out).attrs["emobatch"]
    assert meta["settings"]["blur_faces"] and meta["annotated"]


def test_classify_every_reaches_the_run_and_its_metadata(tmp_path):
    from emobatch.timeline import read_metadata

    out = tmp_path / "r.parquet"
    r = emobatch_cli("run", SAMPLE / "astronaut_clip.mp4", "--out", out, "--quiet",
                     "--classify-every", "3")
    assert r.returncode == 0, r.stderr
    meta, df = read_metadata(out), pd.read_parquet(out).dropna(subset=["face"])
    assert meta["classify_every"] == 3 and meta["settings"]["classify_every"] == 3
    # one astronaut, one track: classified on its first frame, then every third
    assert abs(df["classified"].mean() - 1 / 3) < 0.1 and df["classified"].iloc[0]
    r = emobatch_cli("run", SAMPLE / "astronaut.jpg", "--out", tmp_path / "x.parquet",
                     "--classify-every", "-1")
    assert r.returncode == 2 and "classify_every" in r.stderr


def test_backends_chosen_on_the_command_line_are_used_and_recorded(tmp_path):
    """--backend/--detector-backend/--amp reach the run: the metadata names the backends
    that ran, and the plain PyTorch path finds the same face as the default one."""
    from emobatch.faces.device import cpu_bf16_supported
    from emobatch.faces.detection.runtimes import openvino_available
    from emobatch.timeline import read_metadata

    rows = {}
    for name, args in (("default", []),
                       ("torch", ["--backend", "torch", "--detector-backend", "torch", "--amp", "off"])):
        out = tmp_path / f"{name}.parquet"
        # the CPU's defaults, also on a machine with a GPU
        r = emobatch_cli("run", SAMPLE / "astronaut.jpg", "--out", out, "--quiet",
                         "--device", "cpu", *args)
        assert r.returncode == 0, r.stderr
        rows[name] = (read_metadata(out), pd.read_parquet(out))
    torch_meta, default_meta = rows["torch"][0], rows["default"][0]
    assert (torch_meta["backend"], torch_meta["detector_backend"]) == ("torch-fp32", "torch")
    assert default_meta["backend"] == "int8"
    precision = "bf16" if cpu_bf16_supported() else "f32"
    assert default_meta["detector_backend"] == (f"openvino-{precision}" if openvino_available()
                                                else "torch")
    # photos: torch's networks on AMX CPUs whatever the video backend (there OpenVINO's
    # kernels for each new image size cost more than they save), elsewhere the videos';
    # an explicit backend is used for photos too
    from emobatch.faces.device import cpu_isa

    stills = "torch" if cpu_isa() == "amx" else default_meta["detector_backend"]
    assert default_meta["detector_backend_stills"] == stills
    assert torch_meta["detector_backend_stills"] == "torch"
    a, b = rows["default"][1], rows["torch"][1]
    assert len(a) == len(b) == 1 and abs(a["x1"].iloc[0] - b["x1"].iloc[0]) < 2
    assert a["emotion"].iloc[0] == b["emotion"].iloc[0]
    r = emobatch_cli("run", SAMPLE / "astronaut.jpg", "--out", tmp_path / "x.parquet", "--amp", "fast")
    assert r.returncode == 2


def test_the_command_and_its_workers_raise_pillows_pixel_limit(tmp_path):
    """180 M pixels: over Pillow's default limit, under emobatch's. The command's process
    and its --workers processes let it past both size guards (then it fails to decode: the
    PNG holds no pixels), where a library call stops at Pillow's limit (test_sources)."""
    from test_sources import png_header_only

    for name in ("a.png", "b.png"):
        png_header_only(tmp_path / name, 15_000, 12_000)
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}.parquet"
        r = emobatch_cli("run", tmp_path / "a.png", tmp_path / "b.png", "--out", out,
                         "--quiet", "--workers", workers)
        assert r.returncode == 1, r.stderr
        errs = pd.read_csv(tmp_path / f"w{workers}.errors.csv")
        assert len(errs) == 2 and errs["error"].str.startswith("truncated or corrupt").all(), errs


def test_only_deliberate_errors_are_one_line(tmp_path, monkeypatch):
    """Usage, weights and backend errors exit 2 with one line; output errors 3; any other
    exception is a bug and propagates with its traceback."""
    from emobatch import cli, errors
    from emobatch.batch import driver, process_tuning

    monkeypatch.setattr(process_tuning, "configure_process", lambda: None)  # keep this process as is
    args = ["run", str(SAMPLE / "astronaut.jpg"), "--out", str(tmp_path / "r.parquet"), "--quiet"]
    for exc, code in ((errors.UsageError, 2), (errors.WeightsError, 2),
                      (errors.BackendUnavailable, 2), (errors.OutputError, 3)):
        def fail(*a, exc=exc, **k):
            raise exc("the reason")
        monkeypatch.setattr(driver, "run_files", fail)
        assert cli.main(args) == code
    for exc in (RuntimeError, ValueError, KeyError):
        def bug(*a, exc=exc, **k):
            raise exc("a bug")
        monkeypatch.setattr(driver, "run_files", bug)
        with pytest.raises(exc):
            cli.main(args)


def test_cuda_without_a_gpu_and_a_bad_scheduler_exit_2(tmp_path):
    import torch

    photo, out = SAMPLE / "astronaut.jpg", tmp_path / "r.parquet"
    cases = [(["--scheduler", "no-port-here"], "Dask scheduler")]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "no CUDA GPU"))
    for args, message in cases:
        r = emobatch_cli("run", photo, "--out", out, "--quiet", *args)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr and not out.exists()


def test_report_of_something_not_a_timeline_exits_2(tmp_path):
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    # the first columns of a timeline, but not the faces' and emotions' the report reads
    pd.DataFrame({"source": ["a.mp4"], "frame": [0], "t_sec": [0.0]}).to_parquet(
        tmp_path / "part.parquet")
    for path, message in ((tmp_path / "notes.csv", "not an emobatch timeline"),
                          (tmp_path / "part.parquet", "not an emobatch timeline (no face"),
                          (tmp_path / "broken.parquet", "cannot read the timeline"),
                          (tmp_path / "r.txt", "no such timeline")):
        r = emobatch_cli("report", path)
        assert r.returncode == 2 and message in r.stderr, (path, r.stderr)
        assert "Traceback" not in r.stderr


def test_paths_are_printed_as_text_not_rich_markup(tmp_path):
    """Item 8: an --out under a folder named `d[` (`d[/]y.parquet`) was published, then
    printing it raised rich's MarkupError (exit 1)."""
    out = tmp_path / "d[" / "]y.parquet"
    r = emobatch_cli("run", SAMPLE / "astronaut.jpg", "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    assert f"timeline: {out}" in r.stderr and out.is_file()


@pytest.mark.parametrize("content", [None, "README.md"])
def test_inputs_without_any_media_are_a_usage_error(tmp_path, content):
    """Item 24: an empty folder, or one with no media, exited 0 with `files 0` and an empty
    timeline, saying nothing; now it says so, exit 2, and writes nothing."""
    folder = tmp_path / "in"
    folder.mkdir()
    if content:
        (folder / content).write_text("notes")
    out = tmp_path / "r.parquet"
    r = emobatch_cli("run", folder, "--out", out)
    assert r.returncode == 2, r.stderr
    assert "no photo or video in the inputs" in r.stderr
    assert ("1 .md" in r.stderr) == bool(content)
    assert sorted(tmp_path.iterdir()) == [folder]


def test_help_usage_and_one_line_errors_for_a_newcomer(tmp_path):
    """Item 27: `run --help` shows the defaults and --device's meaning; a typo in a run
    option prints run's usage; a one-line error starts on its first line; a bad --out
    suffix is refused before torch, OpenCV or PyAV load."""
    help_text = " ".join(emobatch_cli("run", "--help").stdout.split())
    for shown in ("default: 0.3)", "default: 30.0)", "default: 20)", "auto: CUDA if present"):
        assert shown in help_text, shown
    photo, out = SAMPLE / "astronaut.jpg", tmp_path / "r.parquet"
    r = emobatch_cli("run", photo, "--out", out, "--smoth", "1")
    assert r.returncode == 2 and r.stderr.startswith("usage: emobatch run ")
    assert "unrecognized arguments: --smoth 1" in r.stderr
    out.write_bytes(b"an earlier timeline")
    r = emobatch_cli("run", photo, "--out", out, "--quiet")
    assert r.returncode == 2 and r.stderr.startswith("emobatch: ") and "exists" in r.stderr
    r = subprocess.run([sys.executable, "-c", _MAIN_THEN_MODULES, "run", str(photo), "--out",
                        str(tmp_path / "x.json")], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("emobatch: --out must end in")
    assert r.stdout.strip() == "", f"imported {r.stdout}"


def test_python_errors_speak_python(tmp_path):
    """Item 27: an unknown keyword raised a raw TypeError from Settings.__init__; an
    existing output said 'add --overwrite' to a Python caller."""
    from emobatch.errors import UsageError

    with pytest.raises(UsageError, match="unknown option.*smoth.*smooth_tau"):
        emobatch.run(SAMPLE / "astronaut.jpg", out=tmp_path / "r.parquet", smoth=1)
    (tmp_path / "r.parquet").write_bytes(b"an earlier timeline")
    with pytest.raises(UsageError, match=r"overwrite=True"):
        emobatch.run(SAMPLE / "astronaut.jpg", out=tmp_path / "r.parquet")
