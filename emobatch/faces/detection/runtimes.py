"""How MTCNN's networks run: a registry of backends (like the classifier's,
emobatch.faces.emotion.runtimes).

Registered here: `torch` (eager, channels-last, fp32)
or, where the optional `openvino` package is installed, `openvino` (its CPU runtime fuses each
convolution with its PReLU and pooling: faster per network, outputs within ~1e-5 of
torch's in fp32; the input normalisation runs inside its graph too). On CPUs that run bf16
natively (AMX, AVX512-BF16) OpenVINO runs them in bf16 unless `amp` is off: faster again,
recall against full MTCNN unchanged (benchmarks/video_throughput.py; the figures in
docs/experiments.md).

Register another with `@register_net_backend(name)`: a class or function taking a `NetSpec`
and returning a `NetRunner`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Protocol

import numpy as np
import torch
from torch import nn

from ...config import openvino_available
from ...errors import UsageError
from ..device import CPU, cpu_isa
from .nets import ONet, PNet, RNet, to_input


@dataclass(frozen=True)
class NetRuntime:
    """How MTCNN's three networks run: a registered backend in a precision ('f32' or
    'bf16'), as a run's plan (emobatch.plan) records it."""

    backend: str
    precision: str = "f32"

    @property
    def name(self) -> str:
        """What metadata and fingerprints record, e.g. 'torch', 'openvino-bf16'."""
        return self.backend if self.backend == "torch" else f"{self.backend}-{self.precision}"


@dataclass(frozen=True)
class NetSpec:
    """One network to prepare: the module, its fixed input side (R-/O-Net: 24/48; None: any,
    P-Net), the input dtypes to get ready for, and the precision ('f32' or 'bf16')."""

    net: nn.Module
    fixed_size: int | None = None
    dtypes: tuple[str, ...] = ()
    precision: str = "f32"


class NetRunner(Protocol):
    """One MTCNN network ready to run: images (N, H, W, 3) 0..255 (uint8 or float32, RGB) ->
    its outputs as numpy arrays, in the network's order. The images are numpy arrays; the
    torch backend also takes a tensor on its device (crops cut there,
    emobatch.faces.detection.crops)."""

    name: str

    def __call__(self, batch: np.ndarray | torch.Tensor) -> list[np.ndarray]: ...


NetFactory = Callable[[NetSpec], "NetRunner"]
NET_BACKENDS: dict[str, NetFactory] = {}


def register_net_backend(name: str) -> Callable[[NetFactory], NetFactory]:
    """Register a way to run MTCNN's networks under `name` (`--detector-backend NAME`)."""
    def deco(factory: NetFactory) -> NetFactory:
        NET_BACKENDS[name] = factory
        return factory
    return deco


@register_net_backend("torch")
class TorchNet:
    """A network in PyTorch eager mode, channels-last, always fp32 (torch's bf16 P-Net was
    measured slower, docs/experiments.md)."""

    name = "torch"

    def __init__(self, spec: NetSpec) -> None:
        self.net = spec.net.eval().to(memory_format=torch.channels_last)
        self.device = next(spec.net.parameters()).device

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray | torch.Tensor) -> list[np.ndarray]:
        return [t.cpu().numpy() for t in self.net(to_input(batch, self.device))]


@register_net_backend("openvino")
class OpenVINONet:
    """A network compiled by OpenVINO for this CPU in the precision asked for (its own
    default would be bf16 on AMX CPUs whatever `amp` says), with as many threads as torch
    uses (so --workers' split holds). The input is
    taken as it comes, (N, H, W, 3) uint8 or float32, and normalised inside the graph. The
    graph is built from the module's layers directly (openvino's own torch conversion traces
    the module, seconds for the three)."""

    name = "openvino"

    def __init__(self, spec: NetSpec) -> None:
        """Compiles for spec.dtypes now, not on first use, in
        spec.precision ('f32' or 'bf16', OpenVINO's inference precision)."""
        import openvino as ov

        self._ov = ov
        self._model = _openvino_graph(spec.net, spec.fixed_size)
        self._config = {"INFERENCE_PRECISION_HINT": spec.precision,
                        "PERFORMANCE_HINT": "LATENCY",
                        "INFERENCE_NUM_THREADS": torch.get_num_threads()}
        self._compiled: dict[str, tuple] = {}
        for dtype in spec.dtypes:
            self._request(np.dtype(dtype))

    def _request(self, dtype: np.dtype) -> tuple:
        key = np.dtype(dtype).name
        if key not in self._compiled:
            ov = self._ov
            ppp = ov.preprocess.PrePostProcessor(self._model.clone())
            ppp.input().tensor().set_element_type(ov.Type.u8 if key == "uint8" else ov.Type.f32) \
                .set_layout(ov.Layout("NHWC"))
            ppp.input().model().set_layout(ov.Layout("NCHW"))
            ppp.input().preprocess().convert_element_type(ov.Type.f32).mean(127.5).scale(128.0)
            compiled = ov.Core().compile_model(ppp.build(), "CPU", self._config)
            self._compiled[key] = (compiled.create_infer_request(), compiled.outputs)
        return self._compiled[key]

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        if batch.dtype != np.uint8:
            batch = batch.astype(np.float32, copy=False)
        request, outputs = self._request(batch.dtype)
        res = request.infer({0: np.ascontiguousarray(batch)})
        return [np.array(res[o]) for o in outputs]  # copies: the request reuses its buffers


MAX_SIDE = 1 << 15  # the largest P-Net level OpenVINO accepts, pixels a side


def _openvino_graph(net: nn.Module, fixed_size: int | None):
    """net's forward() as an OpenVINO model on (N, 3, H, W) float32 (H = W = fixed_size,
    or any)."""
    import openvino as ov
    from openvino import opset13 as op

    def const(t: torch.Tensor) -> object:
        return op.constant(t.detach().float().cpu().contiguous().numpy())

    def conv(x, m: nn.Conv2d):
        y = op.convolution(x, const(m.weight), [1, 1], [0, 0], [0, 0], [1, 1])
        return op.add(y, const(m.bias.reshape(1, -1, 1, 1)))

    def pool(x, m: nn.MaxPool2d):
        k, st = m.kernel_size, m.stride
        k, st = (k, k) if isinstance(k, int) else k, (st, st) if isinstance(st, int) else st
        return op.max_pool(x, list(st), [1, 1], [0, 0], [0, 0], list(k), rounding_type="ceil").output(0)

    def dense(x, m: nn.Linear):
        return op.add(op.matmul(x, const(m.weight), False, True), const(m.bias))

    def prelu(x, m: nn.PReLU):
        return op.prelu(x, const(m.weight))

    def flatten_wh(x):  # as _flatten_wh
        return op.reshape(op.transpose(x, op.constant(np.array([0, 3, 2, 1], np.int64))),
                          op.constant(np.array([0, -1], np.int64)), special_zero=True)

    # a P-Net level's sides are bounded: OpenVINO then builds the kernels of a size it has not
    # seen in about half the time (docs/experiments.md), as for a lost face's search window
    side = fixed_size or ov.Dimension(1, MAX_SIDE)
    param = op.parameter(ov.PartialShape([-1, 3, side, side]), ov.Type.f32, name="x")
    n = net
    if isinstance(net, PNet):
        x = pool(prelu(conv(param, n.conv1), n.prelu1), n.pool1)
        x = prelu(conv(prelu(conv(x, n.conv2), n.prelu2), n.conv3), n.prelu3)
        outs = [conv(x, n.conv4_2), op.softmax(conv(x, n.conv4_1), 1)]
    elif isinstance(net, RNet):
        x = pool(prelu(conv(param, n.conv1), n.prelu1), n.pool1)
        x = pool(prelu(conv(x, n.conv2), n.prelu2), n.pool2)
        x = prelu(conv(x, n.conv3), n.prelu3)
        x = prelu(dense(flatten_wh(x), n.dense4), n.prelu4)
        outs = [dense(x, n.dense5_2), op.softmax(dense(x, n.dense5_1), 1)]
    elif isinstance(net, ONet):
        x = pool(prelu(conv(param, n.conv1), n.prelu1), n.pool1)
        x = pool(prelu(conv(x, n.conv2), n.prelu2), n.pool2)
        x = pool(prelu(conv(x, n.conv3), n.prelu3), n.pool3)
        x = prelu(dense(flatten_wh(prelu(conv(x, n.conv4), n.prelu4)), n.dense5), n.prelu5)
        outs = [dense(x, n.dense6_2), dense(x, n.dense6_3), op.softmax(dense(x, n.dense6_1), 1)]
    else:
        raise TypeError(f"no OpenVINO graph for {type(net).__name__}")
    return ov.Model([o.output(0) if hasattr(o, "output") else o for o in outs], [param],
                    type(net).__name__)


@lru_cache(maxsize=None)
def resolve_net_backend(name: str, device: torch.device = CPU) -> str:
    """'auto' -> 'openvino' on a CPU where it is installed, else 'torch'."""
    if name != "auto":
        if name not in NET_BACKENDS:
            raise UsageError(f"unknown detector backend {name!r}; known: {sorted(NET_BACKENDS)}")
        if name == "openvino" and not openvino_available():
            raise UsageError("detector backend openvino asked for, but the openvino package is "
                             "not installed (pip install 'emobatch[openvino]')")
        if name == "openvino" and device.type != "cpu":
            raise UsageError(f"detector backend openvino runs on the CPU, not on {device}")
        return name
    return "openvino" if device.type == "cpu" and openvino_available() else "torch"


def net_precision(backend: str, device: torch.device = CPU, amp: str = "auto") -> str:
    """'bf16' for OpenVINO where `amp` gives bf16 on a CPU (auto: natively bf16 CPUs), else
    'f32'. `backend` is a resolved name."""
    from ..device import amp_dtype

    bf16 = device.type == "cpu" and amp_dtype(device, amp) == torch.bfloat16
    return "bf16" if backend == "openvino" and bf16 else "f32"


def net_runtime(backend: str, device: torch.device = CPU, amp: str = "auto") -> NetRuntime:
    """How MTCNN's networks will run for a requested `backend` (or 'auto') and `amp`."""
    resolved = resolve_net_backend(backend, device)
    return NetRuntime(resolved, net_precision(resolved, device, amp))


def still_net_backend(backend: str) -> str:
    """The backend MTCNN's networks use on photos: 'auto' stays 'auto' (as for videos) except
    on AMX CPUs, where it is 'torch'. OpenVINO builds kernels for every input shape it has not
    seen; a video repeats its pyramid's shapes, but each photo size is new. With AMX that
    cost more than it saved; without AMX OpenVINO still won (docs/experiments.md)."""
    return "torch" if backend == "auto" and cpu_isa() == "amx" else backend
