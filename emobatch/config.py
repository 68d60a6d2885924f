"""One settings dataclass, built by both the CLI and the Python API, validated once."""
from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

from .errors import UsageError


class Preset(NamedTuple):
    """How a quality level processes videos. Measured by benchmarks/video_throughput.py."""

    detect_every: int     # full detection every N frames (O-Net follows faces in between)
    long_side: int        # long side of the frame given to full detection (0: full resolution)
    full_res_every: int   # every Nth full detection at full resolution anyway (0: never): a
    #                       downscaled pass misses the smallest faces; once found, O-Net follows them
    classify_every: int   # a tracked face is classified every N frames, its track carries it
    #                       in between (emobatch.faces.tracking.classify_schedule); 0: auto
    #                       (resolve_classify_every)


QUALITY_PRESETS: dict[str, Preset] = {
    "exhaustive": Preset(1, 0, 0, 1),
    "balanced": Preset(8, 960, 3, 0),
    "fast": Preset(10, 640, 0, 2),
}

# Classifier TTA on video frames unless `tta` is given: off, because it multiplies the
# classifier's cost, the largest one left on a video, while per-track smoothing already
# averages neighbouring frames. Photos use the weights' own setting.
VIDEO_TTA = "none"
# who is who (emobatch.faces.identity): ids within each input (the default: the same id in
# two videos is then never a guess about two recordings), across all inputs, or not at all
PEOPLE_SCOPES = ("video", "across", "off")
# least average cosine similarity (SFace embeddings) of the tracks of one person, chosen on
# the liveportrait and 1080p clips (docs/experiments.md, "Who is who")
PEOPLE_THRESHOLD = 0.40
# Test-time augmentation modes and how many views each averages
# (emobatch.faces.emotion.classifier.tta_views)
TTA_MODES = ("none", "flip", "zoom", "tencrop")


@dataclass
class Settings:
    """Everything that changes what a run computes (recorded in the output's metadata)."""

    device: str = "auto"              # auto | cpu | cuda
    batch_size: int = 64              # classifier batch (faces)
    min_face_size: int = 20           # MTCNN's smallest face, pixels of the original frame
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # MTCNN P/R/O-Net stage thresholds
    min_score: float = 0.9            # drop detections below this final score
    every: int = 1                    # process every Nth video frame
    weights: Path | None = None       # None: the shipped model
    tta: str | None = None            # TTA_MODES; None: weights' config (videos: VIDEO_TTA)
    amp: str = "auto"                 # auto | on | off (bf16 on capable CPUs, AMP on CUDA)
    backend: str = "auto"             # classifier: auto | emobatch.faces.emotion.runtimes.BACKENDS
    detector_backend: str = "auto"    # MTCNN: auto | emobatch.faces.detection.runtimes.NET_BACKENDS
    quality: str = "balanced"         # exhaustive | balanced | fast: presets for the two below
    detect_every: int | None = None   # full MTCNN every N processed frames (O-Net in between)
    detect_scale: float | None = None  # full detection on a frame scaled by this (None: preset)
    full_res_every: int | None = None  # every Nth full detection at full resolution (0: never)
    classify_every: int | None = None  # classify a tracked face every N video frames (0: auto;
    #                                    None: the preset's)
    track: bool = True                # track ids across frames of a video
    smooth_tau: float = 0.3           # per-track smoothing time constant, seconds; 0 = off
    checkpoint_every: float = 30.0    # seconds of video between checkpoints (resume points)
    blur_faces: bool = False          # blur faces in annotated outputs (for sharing)
    people: str = "video"             # PEOPLE_SCOPES: person ids within each input, across
    #                                   all the run's inputs, or none (no embedding at all)
    people_threshold: float = PEOPLE_THRESHOLD  # least average cosine similarity of one person
    people_gallery: Path | None = None  # reference photos: name.jpg or name/*.jpg, one person each
    save_embeddings: Path | None = None  # write the face embeddings there (biometric data)

    def __post_init__(self) -> None:
        """Validate every field once: a bad value is a UsageError (a ValueError) before any work starts."""
        self.thresholds = tuple(float(t) for t in self.thresholds)
        for name in ("weights", "people_gallery", "save_embeddings"):
            if getattr(self, name) is not None:
                setattr(self, name, Path(getattr(self, name)))
        weights_problem = self.weights and weights_path_problem(self.weights)
        checks = [
            (self.device in DEVICES, f"device must be one of {DEVICES}, not {self.device!r}"),
            (self.amp in AMP_MODES, f"amp must be one of {AMP_MODES}, not {self.amp!r}"),
            (self.backend in backend_choices(),
             f"backend must be one of {backend_choices()}, not {self.backend!r}"),
            (self.detector_backend in detector_backend_choices(),
             f"detector_backend must be one of {detector_backend_choices()}, "
             f"not {self.detector_backend!r}"),
            (self.detector_backend != "openvino" or openvino_available(),
             "detector_backend openvino needs the openvino package (pip install "
             "'emobatch[openvino]')"),
            (self.quality in QUALITY_PRESETS,
             f"quality must be one of {tuple(QUALITY_PRESETS)}, not {self.quality!r}"),
            (self.tta is None or self.tta in TTA_MODES,
             f"tta must be one of {TTA_MODES}, not {self.tta!r}"),
            (_is_int(self.batch_size) and self.batch_size >= 1, "batch_size must be an integer >= 1"),
            (_is_int(self.min_face_size) and self.min_face_size >= 1,
             "min_face_size must be an integer >= 1"),
            (_is_int(self.every) and self.every >= 1, "every must be an integer >= 1"),
            (len(self.thresholds) == 3 and all(0 <= t <= 1 for t in self.thresholds),
             "thresholds must be three numbers in [0, 1]"),
            (0 <= self.min_score <= 1, "min_score must be in [0, 1]"),
            (self.detect_every is None or (_is_int(self.detect_every) and self.detect_every >= 1),
             "detect_every must be an integer >= 1"),
            (self.detect_scale is None or 0 < self.detect_scale <= 1,
             "detect_scale must be in (0, 1]"),
            (self.full_res_every is None
             or (_is_int(self.full_res_every) and self.full_res_every >= 0),
             "full_res_every must be an integer >= 0"),
            (self.classify_every is None
             or (_is_int(self.classify_every) and self.classify_every >= 0),
             "classify_every must be an integer >= 0 (0: auto)"),
            # inf would hold every track at its first frame's probabilities
            (0 <= self.smooth_tau < float("inf"),
             "smooth_tau (--smooth) must be a finite number of seconds >= 0"),
            (0 < self.checkpoint_every < float("inf"), "checkpoint_every must be > 0 seconds"),
            (not weights_problem, weights_problem),
            (self.people in PEOPLE_SCOPES,
             f"people must be one of {PEOPLE_SCOPES}, not {self.people!r}"),
            (isinstance(self.people_threshold, (int, float)) and -1 < self.people_threshold < 1,
             "people_threshold must be a cosine similarity in (-1, 1)"),
            (self.people != "off" or (self.people_gallery is None and self.save_embeddings is None),
             "people_gallery and save_embeddings need people 'video' or 'across', not 'off'"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    def detection_plan(self, width: int, height: int) -> tuple[int, float, int]:
        """(detect_every, detect_scale, full_res_every) for a video of this size: explicit
        values win, else the quality preset. Presets cap the long side seen by full detection."""
        every, long_side, full_res, _ = QUALITY_PRESETS[self.quality]
        scale = min(1.0, long_side / max(width, height)) if long_side else 1.0
        return (self.detect_every or every,
                self.detect_scale if self.detect_scale is not None else scale,
                self.full_res_every if self.full_res_every is not None else full_res)

    def video_classify_every(self) -> int:
        """How often a tracked video face is classified: explicit, else the quality preset's
        (0: auto, see emobatch.faces.tracking.classify_schedule.resolve_classify_every); always
        1 without tracking
        (no track carries a face)."""
        if not self.track:
            return 1
        if self.classify_every is not None:
            return self.classify_every
        return QUALITY_PRESETS[self.quality].classify_every

    def video_tta(self) -> str | None:
        """TTA for video frames: an explicit `tta` wins, else VIDEO_TTA."""
        return self.tta if self.tta is not None else VIDEO_TTA

    def as_metadata(self) -> dict:
        d = asdict(self)
        for name in ("weights", "people_gallery", "save_embeddings"):
            d[name] = str(d[name]) if d[name] else None
        d["thresholds"] = list(self.thresholds)
        return d

    @classmethod
    def default(cls, name: str) -> Any:
        """A field's default, for the CLI."""
        for f in fields(cls):
            if f.name == name:
                return f.default
        raise KeyError(name)


DEVICES = ("auto", "cpu", "cuda")


def weights_path_problem(path: Path) -> str | None:
    """What makes `path` unusable as a weights file, in words (None: a readable file)."""
    if path.is_dir():
        return f"weights {path} is a directory, not a weights file"
    if not path.is_file():
        return f"weights file not found: {path}"
    if not os.access(path, os.R_OK):
        return f"weights {path} cannot be read: permission denied"
    return None


# the backends that ship (the CLI's choices). The registries load torch: validation reads
# them only if already imported, as they are wherever a user registered a backend, so a bad
# option is refused without loading torch
BACKEND_NAMES = ("auto", "torch", "int8")
DETECTOR_BACKEND_NAMES = ("auto", "torch", "openvino")


def backend_choices() -> tuple[str, ...]:
    """'auto', the shipped classifier backends and any a user registered
    (emobatch.faces.emotion.runtimes.BACKENDS, when that module is loaded)."""
    return _choices(BACKEND_NAMES, "emobatch.faces.emotion.runtimes", "BACKENDS")


def detector_backend_choices() -> tuple[str, ...]:
    """'auto', the shipped backends of MTCNN's nets and any a user registered
    (emobatch.faces.detection.runtimes.NET_BACKENDS, when that module is loaded)."""
    return _choices(DETECTOR_BACKEND_NAMES, "emobatch.faces.detection.runtimes", "NET_BACKENDS")


def _choices(shipped: tuple[str, ...], module: str, registry: str) -> tuple[str, ...]:
    loaded = sys.modules.get(module)
    return tuple(dict.fromkeys((*shipped, *getattr(loaded, registry, ()))))


def openvino_available() -> bool:
    """openvino imports here (a broken install counts as absent, so auto falls back to torch)."""
    if importlib.util.find_spec("openvino") is None:
        return False
    try:
        import openvino  # noqa: F401
    except Exception:
        return False
    return True


AMP_MODES = ("auto", "on", "off")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)
