import json

import numpy as np
import pytest
import torch

from emobatch.faces.models import build_model
from emobatch.types import EMOTIONS
from emobatch.faces.weights import default_weights_path, load_weights, save_weights
from emobatch.errors import WeightsError


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


def test_tampered_file_rejected(tmp_path):
    save_weights(build_model("tiny"), {"arch": "tiny"}, tmp_path / "w.pt")
    with open(tmp_path / "w.pt", "ab") as fh:
        fh.write(b"junk")
    with pytest.raises(WeightsError, match="sha256"):
        load_weights(tmp_path / "w.pt")


def test_garbage_file_rejected(tmp_path):
    (tmp_path / "g.pt").write_bytes(b"not a model")
    with pytest.raises(WeightsError, match="cannot load"):
        load_weights(tmp_path / "g.pt")
    with pytest.raises(WeightsError, match="not found"):
        load_weights(tmp_path / "missing.pt")


def test_shipped_weights_load_and_carry_config():
    lm = load_weights()
    cfg = lm.config
    assert lm.path == default_weights_path()
    for key in ("arch", "labels", "mean", "std", "input_size", "metrics", "command"):
        assert key in cfg, key
    assert cfg["labels"] == list(EMOTIONS)
    sidecar = json.loads(lm.path.with_suffix(".json").read_text())
    assert sidecar["sha256"] == lm.sha256
