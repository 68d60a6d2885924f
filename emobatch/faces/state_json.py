"""Per-video state as JSON, exactly: what a checkpoint saves so a video resumes mid-file.

The stages' `state_dict()` return plain dicts of numbers, lists and numpy arrays; `dumps`
writes arrays as {"__nd__": dtype, "shape": [...], "data": [...]}. Python's float repr
round-trips float64 (and so every float32) exactly, so a resumed video computes the same
values as an uninterrupted one. JSON rather than pickle: loading a checkpoint runs no code.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..types import FaceBatch


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return {"__nd__": obj.dtype.str, "shape": list(obj.shape), "data": obj.ravel().tolist()}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if "__nd__" in obj:
            return np.asarray(obj["data"], dtype=np.dtype(obj["__nd__"])).reshape(obj["shape"])
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def dumps(state: dict[str, Any]) -> str:
    return json.dumps(_encode(state))


def loads(text: str) -> dict[str, Any]:
    return _decode(json.loads(text))


def faces_state(faces: FaceBatch) -> dict[str, np.ndarray]:
    """The detection fields of a batch (what the detection schedule carries between frames)."""
    return {"xyxy": faces.xyxy, "score": faces.score, "landmarks": faces.landmarks}


def faces_from_state(d: dict[str, np.ndarray]) -> FaceBatch:
    return FaceBatch(d["xyxy"], d["score"], d["landmarks"])
