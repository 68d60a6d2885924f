"""How the classifier's network runs: a registry of backends, chosen once per run.

A backend turns loaded weights into a `Runtime`: the module to call on a normalised batch
(N, 1, S, S) and the autocast dtype around it. Registered here:

- `torch`: PyTorch eager with batch norm folded into the convolutions, channels-last; bf16
  autocast where the CPU runs bf16 natively (AMX/AVX512-BF16) or `amp` asks for it, AMP on
  CUDA, else fp32. The fallback that always works.
- `int8`: the same network statically quantised to int8 with PyTorch's x86 engine (fbgemm
  on AVX2, oneDNN with VNNI/AMX where present), from activation ranges calibrated on
  FER2013 training faces and stored in the weights file (`python -m training.quantize`).
  CPU only. PublicTest accuracy moves little against fp32 (docs/model-card.md) and it is
  several times faster than fp32 per face (docs/experiments.md).

`auto` picks `int8` on a CPU when the weights carry a calibration, else `torch`. Register
another with `@register_backend(name)`: a function (LoadedModel, device, amp) -> Runtime.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..device import amp_dtype
from ...errors import BackendUnavailable, UsageError
from ..invariant_layers import invariant_layers
from .models import fold_batchnorm
from .weights import LoadedModel


@dataclass
class Runtime:
    """A classifier ready to call: model((N, 1, H, W) float) -> logits (N, classes)."""

    name: str                   # e.g. 'torch-fp32', 'torch-bf16', 'int8'
    model: nn.Module
    dtype: torch.dtype | None   # autocast dtype around calls (None: none)


BackendFn = Callable[[LoadedModel, torch.device, str], Runtime]
BACKENDS: dict[str, BackendFn] = {}


def register_backend(name: str) -> Callable[[BackendFn], BackendFn]:
    def deco(fn: BackendFn) -> BackendFn:
        BACKENDS[name] = fn
        return fn
    return deco


def inference_model(model: nn.Module) -> nn.Module:
    """The float model as the product runs it: batch norm folded into the convs, channels-last,
    its results in fp32 on a CPU independent of the thread count (emobatch.faces.invariant_layers)."""
    return invariant_layers(fold_batchnorm(model)).to(memory_format=torch.channels_last)


def _precision(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


@register_backend("torch")
def torch_backend(loaded: LoadedModel, device: torch.device, amp: str) -> Runtime:
    dtype = amp_dtype(device, amp)
    return Runtime(runtime_name_of("torch", device, amp), inference_model(loaded.model), dtype)


# -------------------------------------------------------------------------------- int8

INT8_ENGINES = ("x86", "fbgemm", "onednn")


def int8_supported(device: torch.device) -> bool:
    return device.type == "cpu" and torch.backends.quantized.engine in INT8_ENGINES


def prepare_int8(model: nn.Module, size: int = 48) -> nn.Module:
    """A copy of the float model with observers on every activation to quantise: feed it
    calibration batches, then `convert_int8`. FX fuses conv + batch norm + ReLU itself (a
    model with batch norm already folded would leave conv and ReLU apart: one more rounding,
    and accuracy lost). Deterministic for a given architecture, so observer
    states saved from one call load into another."""
    from torch.ao.quantization import get_default_qconfig_mapping, quantize_fx

    import torch.fx.config as fx_config

    # a stack trace per traced node would import torch._dynamo, seconds of every run's
    # start, for debugging information nobody reads here
    emit = getattr(fx_config, "do_not_emit_stack_traces", False)
    fx_config.do_not_emit_stack_traces = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FX quantisation's notice that it moves to torchao
            return quantize_fx.prepare_fx(
                copy.deepcopy(model).eval(),
                get_default_qconfig_mapping(torch.backends.quantized.engine),
                (torch.zeros(1, 1, size, size),))
    finally:
        fx_config.do_not_emit_stack_traces = emit


def observer_state(prepared: nn.Module) -> dict[str, torch.Tensor]:
    """The calibrated observers' buffers of a prepared model (what `int8` needs besides the
    float weights)."""
    return {k: v.detach().clone() for k, v in prepared.state_dict().items()
            if "activation_post_process" in k}


def convert_int8(prepared: nn.Module) -> nn.Module:
    from torch.ao.quantization import quantize_fx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_fx.convert_fx(prepared)


@register_backend("int8")
def int8_backend(loaded: LoadedModel, device: torch.device, amp: str) -> Runtime:
    if not int8_supported(device):
        raise BackendUnavailable(f"the int8 backend runs on x86 CPUs only, not on {device} "
                                 f"(quantized engine {torch.backends.quantized.engine})")
    if not loaded.int8:
        raise BackendUnavailable(f"{loaded.path.name} carries no int8 calibration "
                                 "(add one with python -m training.quantize)")
    prepared = prepare_int8(loaded.model.cpu(), loaded.weights_config.input_size)
    missing = set(k for k in prepared.state_dict() if "activation_post_process" in k) - set(loaded.int8)
    if missing:
        raise BackendUnavailable(f"{loaded.path.name}: int8 calibration does not fit the "
                                 f"network (missing {sorted(missing)[:3]}...)")
    prepared.load_state_dict(loaded.int8, strict=False)
    return Runtime("int8", convert_int8(prepared).eval(), None)


def resolve_backend(name: str, device: torch.device, has_int8: bool) -> str:
    """The registered backend `name` stands for: 'auto' -> 'int8' on a CPU for calibrated
    weights, else 'torch'."""
    if name != "auto":
        if name not in BACKENDS:
            raise UsageError(f"unknown backend {name!r}; known: {sorted(BACKENDS)}")
        return name
    return "int8" if has_int8 and int8_supported(device) else "torch"


def build_runtime(loaded: LoadedModel, device: torch.device, backend: str,
                  amp: str = "auto") -> Runtime:
    """The classifier of `loaded` on `device` through the registered `backend`."""
    return BACKENDS[backend](loaded, device, amp)


def load_runtime(loaded: LoadedModel, device: torch.device, backend: str = "auto",
                 amp: str = "auto") -> Runtime:
    """build_runtime for a requested `backend` or 'auto' (see resolve_backend)."""
    return build_runtime(loaded, device, resolve_backend(backend, device, bool(loaded.int8)), amp)


def runtime_name_of(backend: str, device: torch.device, amp: str) -> str:
    """The Runtime.name a resolved backend gives (what a run's plan records before any model
    is built): int8 and the torch precisions differ in the last digits of every row."""
    if backend == "torch":
        return f"torch-{_precision(amp_dtype(device, amp))}"
    return backend
