"""Device choice and mixed precision: CUDA + AMP, bf16 autocast on capable CPUs, else fp32."""
from __future__ import annotations

import contextlib
import os
import platform
from functools import lru_cache
from pathlib import Path

import torch

from ..errors import UsageError

CPU = torch.device("cpu")


def select_device(device: str = "auto") -> torch.device:
    """The one place a device's name is parsed (a run's plan holds the result; the stages
    take a torch.device): 'auto' picks CUDA when present, else CPU; 'cuda' without a GPU is
    a UsageError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but no CUDA GPU is available")
    return torch.device(device)


def gpu_devices(device: torch.device) -> list[torch.device]:
    """The GPUs a run on `device` may use, one worker process each: every visible one for
    'cuda', the one named for 'cuda:K', none for a CPU."""
    if device.type != "cuda":
        return []
    if device.index is not None:
        return [device]
    return [torch.device("cuda", i) for i in range(torch.cuda.device_count())]


# instruction-set levels, lowest first, and the cpuinfo flags each needs
ISA_LEVELS = ("generic", "avx2", "avx512", "amx")
_ISA_FLAGS = {"avx2": {"avx2", "fma"}, "avx512": {"avx512f", "avx512bw", "avx512vl"},
              "amx": {"amx_bf16", "amx_tile"}}
# the environment caps that torch's kernels obey, mapped to the level they allow at most
_ATEN_CAPS = {"default": "generic", "avx2": "avx2", "avx512": "avx512"}


def _cpuinfo() -> dict[str, str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


@lru_cache(maxsize=None)
def cpu_model() -> str:
    """The CPU's name with its family and model numbers where the name is generic (e.g.
    'Intel(R) Xeon(R) Processor (family 6, model 143)'), as benchmarks record it."""
    info = _cpuinfo()
    name = info.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in info and "model" in info:
        name += f" (family {info['cpu family']}, model {info['model']})"
    return name


@lru_cache(maxsize=None)
def cpu_isa() -> str:
    """The widest vector ISA the CPU kernels may use here: 'amx', 'avx512', 'avx2' or
    'generic'. Read from the CPU's flags, lowered by ATEN_CPU_CAPABILITY and
    ONEDNN_MAX_CPU_ISA when they are set (torch and oneDNN obey them), so
    `ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2` runs as an AVX2-only CPU would."""
    flags = set(_cpuinfo().get("flags", "").split())
    if not flags:  # not Linux: what torch's own dispatch found
        cap = torch.backends.cpu.get_cpu_capability().lower()
        level = "avx512" if cap.startswith("avx512") else "avx2" if cap == "avx2" else "generic"
    else:
        level = "generic"
        for isa in ISA_LEVELS[1:]:
            if not _ISA_FLAGS[isa] <= flags:
                break
            level = isa
    caps = [_ATEN_CAPS.get(os.environ.get("ATEN_CPU_CAPABILITY", "").lower(), "amx")]
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if onednn and onednn not in ("ALL", "DEFAULT"):  # those two cap nothing
        caps.append("amx" if "AMX" in onednn else "avx512" if "AVX512" in onednn
                    else "avx2" if "AVX2" in onednn else "generic")
    return min([level, *caps], key=ISA_LEVELS.index)


# the CPU flags of native bf16 arithmetic (Zen 4/5 and Cooper Lake: AVX512-BF16; Sapphire
# Rapids on: AMX as well)
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=None)
def cpu_bf16_supported() -> bool:
    """True when oneDNN runs bf16 natively here (AVX512-BF16 or AMX); emulated bf16 is slower.
    oneDNN's own answer is yes on any AVX-512 CPU, where it emulates bf16 (a training epoch
    ~10x slower than fp32), so where the CPU's flags are known they decide."""
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
    if x86 and cpu_isa() in ("generic", "avx2"):  # also when capped: oneDNN would emulate it
        return False
    flags = set(_cpuinfo().get("flags", "").split())
    if x86 and flags:
        return any(f in flags for f in BF16_FLAGS)
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return False


def amp_dtype(device: torch.device, mode: str = "auto") -> torch.dtype | None:
    """The autocast dtype to use, or None for plain fp32. mode: auto|on|off."""
    if mode == "off":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode == "on" or cpu_bf16_supported():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


MAX_FRAMES_PER_CALL = 32
# P-Net's working memory on its largest pyramid level, bytes a level pixel (the float input,
# two 10-channel maps, the later smaller maps; twice that for the allocator's slack)
PNET_BYTES_PER_PIXEL = 200
# each frame itself on the GPU, where the cascade cuts its crops: uint8 and float32 copies
FRAME_BYTES_PER_PIXEL = 16


def detect_budget(device: torch.device) -> int:
    """Bytes a video's batched full detections may plan for on `device`: a quarter of a GPU's
    total memory (its total, not what is free now, so that a run's batches do not depend on
    what ran before it); 0 on a CPU."""
    if device.type != "cuda":
        return 0
    return int(torch.cuda.get_device_properties(device).total_memory // 4)


def frames_per_call(budget: int, width: int, height: int, min_face_size: int,
                    scale: float = 1.0) -> int:
    """How many video frames of width x height (seen at `scale`, faces from
    `min_face_size` px) share MTCNN's network calls within `budget` bytes (detect_budget).

    1 with no budget, as on a CPU: there a batch of frames was slower than frame after frame
    (their pyramids no longer fit the caches; docs/experiments.md). Else as many as the budget holds of P-Net's largest level and the frame, at
    most MAX_FRAMES_PER_CALL; a call that runs out of memory anyway is split
    (emobatch.faces.detection.video)."""
    if budget <= 0:
        return 1
    level0 = 12.0 / max(12, round(min_face_size * scale)) * scale  # of the full frame's side
    per_frame = width * height * (PNET_BYTES_PER_PIXEL * level0 ** 2
                                  + FRAME_BYTES_PER_PIXEL * scale ** 2)
    return int(max(1, min(MAX_FRAMES_PER_CALL, budget // max(per_frame, 1.0))))
