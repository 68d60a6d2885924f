import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from emobatch.faces.emotion.models import build_model
from emobatch.types import EMOTIONS
from emobatch.faces.emotion.weights import (WeightsConfig, default_weights_path, load_weights,
                                           save_weights)
from emobatch.errors import WeightsError
from conftest import ROOT, SAMPLE


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    m = build_model("tiny").eval()
    digest = save_weights(m, {"arch": "tiny", "mean": 0.5, "std": 0.25}, tmp_path / "w.pt")
    side = json.loads((tmp_path / "w.json").read_text())
    assert side["sha256"] == digest and side["labels"] == list(EMOTIONS)
    loaded = load_weights(tmp_path / "w.pt")
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        np.testing.assert_allclose(loaded.model(x), m(x), atol=1e-6)
    assert loaded.sha256 == digest and loaded.config["arch"] == "tiny"
    assert loaded.weights_config == WeightsConfig("tiny", EMOTIONS, 0.5, 0.25, "none", False)


def test_weights_config_defaults_live_in_one_place():
    cfg = WeightsConfig.of({"arch": "vgg_m", "labels": ["a", "b"], "int8": {"faces": 8}})
    assert (cfg.labels, cfg.mean, cfg.std, cfg.tta, cfg.int8) == (("a", "b"), 0.5, 0.25, "none", True)
    with pytest.raises(WeightsError, match="no architecture"):
        WeightsConfig.of({"labels": list(EMOTIONS)})
    with pytest.raises(AttributeError):
        cfg.tta = "flip"  # type: ignore[misc]  # frozen
    assert cfg.input_size == 48  # weights written before the network's side was recorded
    assert WeightsConfig.of({"arch": "vgg_m", "input_size": [64, 64], "mean": 0.4}).inputs == {
        "mean": 0.4, "std": 0.25, "size": 64}  # what predict_probs is given
    for bad in ([64, 48], [8, 8], "64", [63.5, 63.5]):
        with pytest.raises(WeightsError, match="input_size"):
            WeightsConfig.of({"arch": "vgg_m", "input_size": bad})


def test_tampered_file_rejected(tmp_path):
    save_weights(build_model("tiny"), {"arch": "tiny"}, tmp_path / "w.pt")
    with open(tmp_path / "w.pt", "ab") as fh:
        fh.write(b"junk")
    with pytest.raises(WeightsError, match="sha256"):
        load_weights(tmp_path / "w.pt")


def test_garbage_file_rejected(tmp_path):
    (tmp_path / "g.pt").write_bytes(b"not a model")
    with pytest.raises(WeightsError, match="not a PyTorch weights file"):
        load_weights(tmp_path / "g.pt")
    with pytest.raises(WeightsError, match="not found"):
        load_weights(tmp_path / "missing.pt")
    with pytest.raises(WeightsError, match="is a directory, not a weights file"):
        load_weights(tmp_path)


# the command with one file unreadable, as chmod 000 makes it for anyone but root (tests may
# run as root, who reads any file): open and os.access are denied for it, as the kernel would
_LOCKED = """import builtins, os, sys
locked, real_open, real_access = sys.argv.pop(1), builtins.open, os.access
def is_locked(path):
    return isinstance(path, (str, os.PathLike)) and os.path.abspath(path) == locked
def deny_open(path, *args, **kwargs):
    if is_locked(path):
        raise PermissionError(13, "Permission denied", str(path))
    return real_open(path, *args, **kwargs)
builtins.open = deny_open
os.access = lambda path, mode, **kw: not is_locked(path) and real_access(path, mode, **kw)
from emobatch.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_bad_weights_files_exit_2_saying_what_is_wrong():
    """`--weights` a text file, a folder, a file the user may not read, a file cut short, a
    PyTorch file that is not emobatch weights: exit 2, one line that says which."""
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "text.pt").write_text("hello, these are not weights\n")
        (d / "folder.pt").mkdir()
        (d / "locked.pt").write_bytes(default_weights_path().read_bytes())
        os.chmod(d / "locked.pt", 0)
        (d / "cut.pt").write_bytes(default_weights_path().read_bytes()[:100_000])
        torch.save({"fc.weight": torch.zeros(2)}, d / "bare.pt")
        cases = {"text.pt": "not a PyTorch weights file (it holds text: 'hello, these are",
                 "folder.pt": "is a directory, not a weights file",
                 "locked.pt": "cannot be read: permission denied",
                 "cut.pt": "is a truncated PyTorch weights file",
                 "bare.pt": "is a PyTorch file but not emobatch weights"}
        for name, message in cases.items():
            cmd = ["-c", _LOCKED, str(d / name)] if name == "locked.pt" else ["-m", "emobatch"]
            r = subprocess.run([sys.executable, *cmd, "run", str(SAMPLE / "astronaut.jpg"),
                                "--out", str(d / "r.parquet"), "--weights", str(d / name), "--quiet"],
                               cwd=ROOT, capture_output=True, text=True, timeout=300)
            assert r.returncode == 2 and message in r.stderr, (name, r.stderr)
            assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert not (d / "r.parquet").exists()


def test_shipped_weights_load_and_carry_config():
    lm = load_weights()
    cfg = lm.config
    assert lm.path == default_weights_path()
    for key in ("arch", "labels", "mean", "std", "input_size", "metrics", "command"):
        assert key in cfg, key
    assert cfg["labels"] == list(EMOTIONS)
    sidecar = json.loads(lm.path.with_suffix(".json").read_text())
    assert sidecar["sha256"] == lm.sha256
