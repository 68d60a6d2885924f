"""What a run will do, resolved once from what the user asked.

`Settings` is the request (`--device auto`, `--backend auto`, ...); `resolve_plan` turns it
into a frozen `RunPlan`: the device, the classifier's backend and precision, MTCNN's runtime
for videos and for photos, classify-every and the TTA of each kind of input. The pipeline is
built from the plan (`FacePipeline(plan)`), the run's metadata and its resume fingerprint are
read from it, and the runners hand the same plan to worker processes and Dask workers, which
never resolve anything again: every process runs what the metadata says.

Resolving reads the weights' config and hashes the weight files (the classifier's and
MTCNN's), but builds no network.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ._version import __version__
from .config import Settings
from .faces.emotion.runtimes import resolve_backend, runtime_name_of
from .faces.device import detect_budget, select_device
from .faces.detection.nets import nets_sha256
from .faces.detection.runtimes import NetRuntime, net_runtime, still_net_backend
from .faces.tracking.classify_schedule import resolve_classify_every
from .faces.emotion.weights import WeightsConfig, default_weights_path, read_config, sha256_of
from .faces.identity.embedder import EMBEDDER, model_bytes, package_version

# settings used only when the timeline is published (clustering, names, the embeddings'
# file): a resumed run may change them
PUBLISH_ONLY = ("people_threshold", "people_gallery", "save_embeddings")


@dataclass(frozen=True)
class RunPlan:
    """Everything a run resolved from its Settings, in one place."""

    settings: Settings            # as asked, with classify_every resolved (what metadata records)
    device: torch.device          # cpu, cuda, cuda:1: parsed once (select_device)
    weights: Path                 # the weights file here (the shipped one if none was given);
    #                               a worker loads its own copy, checked by weights_sha256
    weights_sha256: str
    weights_config: WeightsConfig = field(compare=False, repr=False)
    detector_weights_sha256: str = ""    # MTCNN's three weight files (facenet-pytorch's)
    classifier_backend: str = "torch"    # a registered backend (emobatch.faces.emotion.runtimes)
    classifier_runtime: str = "torch-fp32"  # its Runtime.name: 'int8', 'torch-bf16', ...
    detector: NetRuntime = NetRuntime("torch")         # MTCNN's nets on video frames
    detector_stills: NetRuntime = NetRuntime("torch")  # ... and on photos
    classify_every: int = 1       # a tracked video face is classified every N frames
    tta: str = "none"             # photos
    tta_video: str = "none"       # video frames
    detect_budget: int = 0        # bytes for batched full detections (GPU); 0: a frame a call

    def metadata(self) -> dict[str, Any]:
        """The run's metadata about what ran (the timeline's footer, the .meta.json)."""
        c = self.weights_config
        return {"emobatch_version": __version__, "weights": str(self.weights),
                "weights_sha256": self.weights_sha256, "arch": c.arch,
                "model_metrics": c.metrics, "tta": self.tta, "tta_video": self.tta_video,
                "device": str(self.device), "backend": self.classifier_runtime,
                "detector_backend": self.detector.name,
                "detector_backend_stills": self.detector_stills.name,
                "detector_weights_sha256": self.detector_weights_sha256,
                "classify_every": self.classify_every, "detect_budget": self.detect_budget,
                "people": self.people_metadata(), "settings": self.settings.as_metadata()}

    def people_metadata(self) -> dict[str, Any] | None:
        """How person ids were made: scope, threshold and the embedding model (None: off)."""
        s = self.settings
        if s.people == "off":
            return None
        return {"scope": s.people, "threshold": s.people_threshold,
                "embedder": EMBEDDER | {"version": package_version()},
                "gallery": str(s.people_gallery) if s.people_gallery else None}

    def fingerprint(self, annotate: Path | None = None) -> str:
        """What a resumed run must match (`resume_key`), hashed."""
        key = self.resume_key(annotate)
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    def resume_key(self, annotate: Path | None = None) -> dict[str, Any]:
        """Every setting that changes the rows, both networks' weights by content (their path
        may differ), the resolved runtimes and the annotate folder."""
        d = self.settings.as_metadata()
        d.pop("weights")
        for name in PUBLISH_ONLY:
            d.pop(name)
        # within or across inputs, the same embeddings are computed
        d["people"] = None if d["people"] == "off" else EMBEDDER["sha256"]
        d.update(weights_sha256=self.weights_sha256,
                 detector_weights_sha256=self.detector_weights_sha256, device=str(self.device),
                 precision=self.classifier_runtime, detector=self.detector.name,
                 detector_stills=self.detector_stills.name,
                 annotate=str(annotate.resolve()) if annotate else None, emobatch=__version__,
                 torch=torch.__version__)
        if self.detect_budget:  # batches change a GPU's roundings; a CPU has none
            d["detect_budget"] = self.detect_budget
        return d


def resolve_plan(settings: Settings) -> RunPlan:
    """The one place where 'auto' and the defaults become what will run. Raises UsageError
    (a device or backend that is not there) or WeightsError."""
    device = select_device(settings.device)
    weights = settings.weights or default_weights_path()
    config = WeightsConfig.of(read_config(weights))
    backend = resolve_backend(settings.backend, device, config.int8)
    video_net = net_runtime(settings.detector_backend, device, settings.amp)
    still = still_net_backend(settings.detector_backend)
    still_net = (video_net if still == settings.detector_backend
                 else net_runtime(still, device, settings.amp))
    every = resolve_classify_every(settings.video_classify_every(), device)
    if settings.people != "off":
        model_bytes()  # installed and the expected file, else WeightsError before any work
    return RunPlan(
        settings=replace(settings, classify_every=every), device=device, weights=weights,
        weights_sha256=sha256_of(weights), weights_config=config,
        detector_weights_sha256=nets_sha256(), classifier_backend=backend,
        classifier_runtime=runtime_name_of(backend, device, settings.amp),
        detector=video_net, detector_stills=still_net, classify_every=every,
        tta=settings.tta if settings.tta is not None else config.tta,
        tta_video=settings.video_tta(), detect_budget=detect_budget(device))
