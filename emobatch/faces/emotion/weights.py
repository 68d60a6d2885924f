"""Save and load classifier weights together with their config, offline and verified.

A weights file `NAME.pt` holds {"config": {...}, "state_dict": {...}} and, optionally,
"int8": {...}, the calibrated activation observers of the int8 backend (emobatch.faces.emotion.runtimes;
the config's "int8" entry says how they were calibrated); beside it `NAME.json` repeats the
config and adds the file's sha256, which loading verifies.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...atomic import atomic_path, write_text
from ...config import weights_path_problem
from ...errors import WeightsError
from .models import build_model
from .preprocess import DEFAULT_MEAN, DEFAULT_STD
from ...types import EMOTIONS

# A wheel holds the shipped weights inside the package (pyproject maps weights/ to
# emobatch/_weights); a source checkout or editable install reads the repo's weights/.
PACKAGE_WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "_weights"
WEIGHTS_DIR = Path(__file__).resolve().parents[3] / "weights"
DEFAULT_NAME = "emobatch_fer.pt"


@dataclass(frozen=True)
class WeightsConfig:
    """What inference reads of a weights file's config, typed, with its defaults in one place.
    The config itself (a dict) keeps everything training wrote: provenance, commands."""

    arch: str
    labels: tuple[str, ...] = EMOTIONS     # the classifier's outputs, in order
    mean: float = DEFAULT_MEAN             # input normalisation (emobatch.faces.emotion.preprocess)
    std: float = DEFAULT_STD
    tta: str = "none"                      # photos' default test-time augmentation
    int8: bool = False                     # whether the file holds an int8 calibration
    input_size: int = 48                   # side of the square crops the network reads
    metrics: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    @classmethod
    def of(cls, config: dict[str, Any]) -> "WeightsConfig":
        """The typed view of a config dict (WeightsError without an architecture)."""
        if "arch" not in config:
            raise WeightsError("the weights' config names no architecture (arch)")
        given = {k: config[k] for k in ("labels", "mean", "std", "tta", "metrics") if k in config}
        if "labels" in given:
            given["labels"] = tuple(given["labels"])
        return cls(arch=config["arch"], int8=bool(config.get("int8")),
                   input_size=_input_side(config.get("input_size", 48)), **given)

    @property
    def inputs(self) -> dict[str, Any]:
        """How crops become the network's input, as predict_probs takes it: the
        normalisation and the side (`predict_probs(model, crops, ..., **cfg.inputs)`)."""
        return {"mean": self.mean, "std": self.std, "size": self.input_size}


def _input_side(value: Any) -> int:
    """The config's `input_size` ([h, w] as training writes it, or one side) as one side:
    crops are square (emobatch.faces.align); WeightsError for anything else."""
    h, w = (value, value) if isinstance(value, (int, float)) else tuple(value)
    if h != w or int(h) != h or not 16 <= h <= 512:
        raise WeightsError(f"the weights' input_size {value!r} is not a square side of 16-512 px")
    return int(h)


@dataclass
class LoadedModel:
    model: nn.Module
    config: dict[str, Any]
    path: Path
    sha256: str
    int8: dict[str, torch.Tensor] | None = None  # observer buffers for the int8 backend

    @property
    def weights_config(self) -> WeightsConfig:
        return WeightsConfig.of(self.config)


def sha256_of(path: Path) -> str:
    """The file's sha256 (hex); WeightsError if it cannot be read (a folder, no permission)."""
    check_weights_path(path)
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise WeightsError(f"cannot read weights {path}: {e.strerror or e}") from None
    return h.hexdigest()


def check_weights_path(path: Path) -> None:
    """WeightsError unless `path` names a readable file (the message says what is wrong)."""
    problem = weights_path_problem(path)
    if problem:
        raise WeightsError(problem)


def default_weights_path() -> Path:
    """The shipped model: the installed package's copy (wheel), else the checkout's `weights/`."""
    for d in (PACKAGE_WEIGHTS_DIR, WEIGHTS_DIR):
        if (d / DEFAULT_NAME).is_file():
            return d / DEFAULT_NAME
    raise WeightsError(f"shipped weights {DEFAULT_NAME} not found in {PACKAGE_WEIGHTS_DIR} or {WEIGHTS_DIR}")


def save_weights(model: nn.Module, config: dict[str, Any], path: str | Path,
                 int8: dict[str, torch.Tensor] | None = None) -> str:
    """Write weights + config (+ int8 observers) atomically, then the sidecar JSON with the
    sha256; returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {"labels": list(EMOTIONS), **config}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob: dict[str, Any] = {"config": config, "state_dict": state}
    if int8:  # the config names a calibration if and only if one is saved
        config.setdefault("int8", {"observers": len(int8)})
        blob["int8"] = {k: v.detach().cpu().contiguous() for k, v in int8.items()}
    else:
        config.pop("int8", None)
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    digest = sha256_of(path)
    write_text(path.with_suffix(".json"), json.dumps({**config, "sha256": digest}, indent=2) + "\n")
    return digest


def load_weights(path: str | Path | None = None, device: str = "cpu") -> LoadedModel:
    """Load a weights file (default: the shipped one) into its architecture, in eval mode."""
    path = Path(path) if path is not None else default_weights_path()
    digest = sha256_of(path)
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        expected = _read_sidecar(sidecar).get("sha256")
        if expected and expected != digest:
            raise WeightsError(f"{path}: sha256 {digest[:12]}... does not match {sidecar.name} "
                               f"({expected[:12]}...); the file is corrupt or was replaced")
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise WeightsError(f"{path} is {_unloadable(path, e)}") from e
    if not (isinstance(blob, dict) and isinstance(blob.get("config"), dict)
            and "state_dict" in blob):
        raise WeightsError(f"{path} is a PyTorch file but not emobatch weights (no config and "
                           f"state_dict; write them with emobatch.faces.emotion.weights.save_weights)")
    config = blob["config"]
    try:
        model = build_model(config["arch"], num_classes=len(config["labels"]))
        model.load_state_dict(blob["state_dict"])
    except WeightsError:
        raise
    except Exception as e:
        raise WeightsError(f"cannot load weights {path}: {_first_line(e)}") from e
    # the config says whether there is a calibration (runs' fingerprints read it from the sidecar)
    int8 = blob.get("int8") if config.get("int8") else None
    return LoadedModel(model.to(device).eval(), config, path, digest, int8)


def _unloadable(path: Path, error: Exception) -> str:
    """Why torch.load failed on `path`, in words: what the file holds instead."""
    with open(path, "rb") as fh:
        head = fh.read(256)
    if zipfile.is_zipfile(path):
        if isinstance(error, pickle.UnpicklingError):
            return ("a PyTorch file holding more than tensors and plain data, which weights "
                    "are not loaded with (weights_only=True)")
        return f"a corrupt PyTorch weights file ({_first_line(error)})"
    if head.startswith(b"PK"):  # a zip archive without its end: torch.save's, cut short
        return "a truncated PyTorch weights file (copied or downloaded only in part?)"
    if b"\0" not in head:
        try:
            text = head.decode("utf-8").strip().splitlines()
        except UnicodeDecodeError:
            text = None
        if text is not None:
            shown = text[0][:40] if text else ""
            return f"not a PyTorch weights file (it holds text: {shown!r})"
    return "not a PyTorch weights file (not the zip archive torch.save writes)"


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _read_sidecar(sidecar: Path) -> dict[str, Any]:
    """The config JSON beside a weights file; WeightsError if it is not a JSON object."""
    try:
        config = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsError(f"cannot read {sidecar}: {e}") from e
    if not isinstance(config, dict):
        raise WeightsError(f"{sidecar} holds no weights config (a JSON object)")
    return config


def read_config(path: str | Path | None = None) -> dict[str, Any]:
    """A weights file's config without building its model: from the sidecar JSON when there
    is one, else from the file."""
    path = Path(path) if path is not None else default_weights_path()
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        return _read_sidecar(sidecar)
    return load_weights(path).config
