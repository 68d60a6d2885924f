"""The wheel: built from the checkout, installed into a fresh venv outside it, runs the sample.

The fresh venv gets emobatch only from the wheel (`pip --python VENV install --no-deps`); torch
and the other dependencies come from the current environment through a `.pth` file that lists
its site-packages directories. Directories listed in a `.pth` file are only appended to
sys.path (their own `.pth` files, such as an editable install's finder, are not run), and a
directory that holds an `emobatch` package (a checkout) is left out, so the emobatch that runs
can only be the wheel's; the test checks that from `emobatch.__file__` and the weights' path.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from emobatch import EMOTIONS, read_timeline

ROOT = Path(__file__).resolve().parent.parent
# What the wheel is built from (a copy, so the build leaves nothing in the checkout).
SOURCES = ["pyproject.toml", "README.md", "LICENSE", "emobatch", "training", "weights"]

pytestmark = pytest.mark.slow


def _setuptools_builds_wheels() -> bool:
    """True when the installed setuptools builds wheels itself (>= 70.1; no `wheel` package)."""
    try:
        major, minor = (int(x) for x in importlib.metadata.version("setuptools").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (70, 1)


def _dependency_dirs() -> list[str]:
    """The current environment's site-packages, minus anything that holds an emobatch package."""
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    keep = []
    for d in dict.fromkeys(dirs):
        p = Path(d)
        if p.is_dir() and not (p / "emobatch").exists() and p.resolve() != ROOT:
            keep.append(str(p))
    return keep


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif p.exists():
            shutil.copy2(p, src / name)
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(tmp / "dist")]
    if _setuptools_builds_wheels():
        cmd.append("--no-build-isolation")  # no download of a build environment
    subprocess.run(cmd, check=True, cwd=tmp, env=_clean_env(), timeout=300)
    (wheel,) = (tmp / "dist").glob("emobatch-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    root = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(root)
    python = root / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                    "--no-index", "-q", str(wheel)], check=True, cwd=tmp, env=_clean_env(), timeout=300)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True, cwd=tmp).stdout.strip()
    (Path(purelib) / "_emobatch_test_deps.pth").write_text("\n".join(_dependency_dirs()) + "\n")
    return root


@pytest.mark.skipif(sys.platform == "win32", reason="venv layout bin/ is POSIX")
def test_wheel_installs_with_weights_and_runs_the_sample(tmp_path):
    tmp = tmp_path.resolve()
    assert not tmp.is_relative_to(ROOT)
    wheel = _build_wheel(tmp)
    names = zipfile.ZipFile(wheel).namelist()
    assert "emobatch/_weights/emobatch_fer.pt" in names and "emobatch/_weights/emobatch_fer.json" in names
    assert "emobatch/training/fit.py" in names
    assert not [n for n in names if n.split("/")[0] in ("training", "weights")], "top-level clash in site-packages"

    root = _fresh_venv(tmp, wheel)
    python, env = root / "bin" / "python", _clean_env()
    probe = ("import json, emobatch, emobatch.faces.emotion.weights as w, emobatch.training.evaluate as ev\n"
             "import importlib.util\n"
             "print(json.dumps({'emobatch': emobatch.__file__, 'weights': str(w.default_weights_path()),"
             " 'training': ev.__file__, 'top_training': importlib.util.find_spec('training') is not None}))")
    got = json.loads(subprocess.run([str(python), "-c", probe], check=True, capture_output=True, text=True,
                                    cwd=tmp, env=env, timeout=120).stdout)
    for key in ("emobatch", "weights", "training"):
        assert Path(got[key]).resolve().is_relative_to(root), (key, got[key])
    assert Path(got["weights"]).parent.name == "_weights"
    assert not got["top_training"]

    out = tmp / "out" / "results.parquet"
    run = subprocess.run([str(root / "bin" / "emobatch"), "run", str(ROOT / "examples" / "sample"),
                          "--out", str(out), "--quiet"],
                         capture_output=True, text=True, cwd=tmp, env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    df = read_timeline(out)
    meta = df.attrs["emobatch"]
    assert Path(meta["weights"]).resolve().is_relative_to(root)
    assert set(df["source"].map(lambda s: Path(s).name)) == {"astronaut.jpg", "astronaut_clip.mp4"}
    faces = df.dropna(subset=["emotion"])
    assert len(faces) >= 30  # the photo and each of the clip's 30 frames show the astronaut's face
    assert faces["emotion"].isin(EMOTIONS).all()
    assert (faces[list(EMOTIONS)].sum(axis=1) - 1).abs().max() < 1e-3
