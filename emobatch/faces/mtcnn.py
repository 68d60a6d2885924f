"""MTCNN's cascade on one image, driven for speed on CPU.

The algorithm, the networks and their weights are facenet-pytorch's (P-, R- and O-Net with
the weight files from its wheel; `facenet_pytorch.models.utils.detect_face` step for step:
pyramid, thresholds, NMS, box regression). What differs is only how the work is done, because
on a CPU facenet-pytorch spends most of a frame outside the convolutions:
- the networks run channels-last: PyTorch's max-pooling on channels-first tensors is ~4x
  slower than on channels-last ones, and was ~40% of a 1080p detection;
- the R-/O-Net candidate crops (hundreds a frame) are area-resampled by OpenCV instead of one
  `interpolate(mode="area")` call each (~90 us of overhead a call);
- each pyramid level is area-resampled by OpenCV from the uint8 level before it, not from the
  full float frame (at 1080p: ~60 ms a frame in resampling alone, 12 levels each reading
  the whole frame).
So the networks see inputs that differ by about a grey level from facenet-pytorch's; the faces
found are the same up to MTCNN's own jitter: `tests/test_mtcnn.py` checks boxes and scores on
photos, and benchmarks/video_throughput.py measures recall against facenet-pytorch's MTCNN.

The three networks run through a backend (NET_BACKENDS): `torch` (eager, channels-last, fp32)
or, where the optional `openvino` package is installed, `openvino` (its CPU runtime fuses each
convolution with its PReLU and pooling: 1.3-2.3x faster per network on 2 cores, outputs
within ~1e-5 of torch's in fp32; the input normalisation runs inside its graph too). On CPUs
that run bf16 natively (AMX, AVX512-BF16) OpenVINO runs them in bf16 unless `amp` is off:
~1.3x faster again on the 1080p clip, recall against full MTCNN unchanged (0.96), emotion
agreement 0.92 against 0.94 (benchmarks/video_throughput.py).
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np
import torch
from torch import nn

from ..errors import UsageError
from .device import cpu_isa
from .invariant import invariant_layers, softmax_dim1


def weights_dir() -> Path:
    """facenet-pytorch's folder of MTCNN weights, found without importing the package."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("facenet-pytorch is not installed: emobatch uses its MTCNN weights")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


class PNet(nn.Module):
    """Proposal net, fully convolutional: (N, 3, H, W) -> box offsets (N, 4, h, w), face
    probabilities (N, 2, h, w) for 12x12 windows at stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), softmax_dim1(self.conv4_1(x))


class RNet(nn.Module):
    """Refinement net: (N, 3, 24, 24) -> box offsets (N, 4), face probabilities (N, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(_flatten_wh(x)))
        return self.dense5_2(x), softmax_dim1(self.dense5_1(x))


class ONet(nn.Module):
    """Output net: (N, 3, 48, 48) -> box offsets (N, 4), landmarks (N, 10: 5 x then 5 y, as
    fractions of the box), face probabilities (N, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_flatten_wh(self.prelu4(self.conv4(x)))))
        return self.dense6_2(x), self.dense6_3(x), softmax_dim1(self.dense6_1(x))


def _flatten_wh(x: torch.Tensor) -> torch.Tensor:
    # the dense layers were trained (in Caffe) on features flattened in (W, H, C) order
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


def load_nets(device: str | torch.device = "cpu") -> tuple[PNet, RNet, ONet]:
    """P-, R- and O-Net with facenet-pytorch's trained weights, in eval mode, their layers'
    results independent of the thread count (emobatch.faces.invariant)."""
    nets = []
    for cls, name in ((PNet, "pnet"), (RNet, "rnet"), (ONet, "onet")):
        net = cls()
        net.load_state_dict(torch.load(weights_dir() / f"{name}.pt", map_location="cpu",
                                       weights_only=True))
        nets.append(invariant_layers(net).to(device).eval())
    return nets[0], nets[1], nets[2]


class NetRunner(Protocol):
    """One MTCNN network ready to run: images (N, H, W, 3) 0..255 (uint8 or float32, RGB) ->
    its outputs as numpy arrays, in the network's order."""

    name: str

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]: ...


class TorchNet:
    """A network in PyTorch eager mode, channels-last."""

    name = "torch"

    def __init__(self, net: nn.Module, fixed_size: int | None = None,
                 dtypes: tuple[str, ...] = (), precision: str = "f32") -> None:
        # always fp32: torch's bf16 P-Net was measured slower (docs/experiments.md)
        self.net = net.eval().to(memory_format=torch.channels_last)
        self.device = next(net.parameters()).device

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        return [t.cpu().numpy() for t in self.net(to_input(batch).to(self.device))]


class OpenVINONet:
    """A network compiled by OpenVINO for this CPU in the precision asked for (its own
    default would be bf16 on AMX CPUs whatever `amp` says), with as many threads as torch
    uses (so --workers' split holds). The input is
    taken as it comes, (N, H, W, 3) uint8 or float32, and normalised inside the graph. The
    graph is built from the module's layers directly (openvino's own torch conversion traces
    the module, ~2.5 s for the three)."""

    name = "openvino"

    def __init__(self, net: nn.Module, fixed_size: int | None = None,
                 dtypes: tuple[str, ...] = (), precision: str = "f32") -> None:
        """dtypes: input types to compile for now (~0.05-0.3 s each), not on first use;
        precision: 'f32' or 'bf16' (OpenVINO's inference precision)."""
        import openvino as ov

        self._ov = ov
        self._model = _openvino_graph(net, fixed_size)
        self._config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
                        "INFERENCE_NUM_THREADS": torch.get_num_threads()}
        self._compiled: dict[str, tuple] = {}
        for dtype in dtypes:
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
    # seen in half the time (9 photo-sized levels: 331 -> 158 ms the first time, the same
    # 105 ms after), as for a lost face's search window
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


# name -> runner factory (net, fixed input size or None, input dtypes to prepare, precision)
NET_BACKENDS: dict[str, Callable[[nn.Module, int | None, tuple[str, ...], str], NetRunner]] = {
    "torch": TorchNet, "openvino": OpenVINONet}


@lru_cache(maxsize=None)
def openvino_available() -> bool:
    """openvino imports here (a broken install counts as absent, so auto falls back to torch)."""
    if importlib.util.find_spec("openvino") is None:
        return False
    try:
        import openvino  # noqa: F401
    except Exception:
        return False
    return True


def resolve_net_backend(name: str, device: str | torch.device = "cpu") -> str:
    """'auto' -> 'openvino' on a CPU where it is installed, else 'torch'."""
    if name != "auto":
        if name not in NET_BACKENDS:
            raise UsageError(f"unknown detector backend {name!r}; known: {sorted(NET_BACKENDS)}")
        if name == "openvino" and not openvino_available():
            raise UsageError("detector backend openvino asked for, but the openvino package is "
                             "not installed (pip install 'emobatch[openvino]')")
        if name == "openvino" and torch.device(device).type != "cpu":
            raise UsageError(f"detector backend openvino runs on the CPU, not on {device}")
        return name
    return "openvino" if torch.device(device).type == "cpu" and openvino_available() else "torch"


def net_precision(backend: str, device: str | torch.device = "cpu", amp: str = "auto") -> str:
    """'bf16' for OpenVINO where `amp` gives bf16 on a CPU (auto: natively bf16 CPUs), else
    'f32'. `backend` is a resolved name."""
    from .device import amp_dtype

    dev = torch.device(device)
    bf16 = dev.type == "cpu" and amp_dtype(dev, amp) == torch.bfloat16
    return "bf16" if backend == "openvino" and bf16 else "f32"


def net_runtime(backend: str, device: str | torch.device = "cpu", amp: str = "auto"
                ) -> tuple[str, str, str]:
    """How MTCNN's networks will run: (registered backend, precision, name), the name being
    what a run's metadata and resume fingerprint record, e.g. 'torch', 'openvino-bf16'."""
    resolved = resolve_net_backend(backend, device)
    precision = net_precision(resolved, device, amp)
    return resolved, precision, resolved if resolved == "torch" else f"{resolved}-{precision}"


def net_runtime_name(backend: str, device: str | torch.device = "cpu", amp: str = "auto") -> str:
    return net_runtime(backend, device, amp)[2]


def still_net_backend(backend: str) -> str:
    """The backend MTCNN's networks use on photos: 'auto' stays 'auto' (as for videos) except
    on AMX CPUs, where it is 'torch'. OpenVINO builds kernels for every input shape it has not
    seen; a video repeats its pyramid's shapes, but each photo size is new. With AMX that
    cost more than it saved (17 photos of different sizes: a run ~9% slower than on torch's
    networks, an Intel Xeon); without AMX OpenVINO still won (an AMD EPYC, Zen 4: 1.18x in
    bf16, 1.13x capped to AVX2 in fp32; docs/experiments.md)."""
    return "torch" if backend == "auto" and cpu_isa() == "amx" else backend


class CascadeMTCNN:
    """image (H, W, 3) uint8 RGB -> (boxes (n, 5) x1 y1 x2 y2 score, landmarks (n, 5, 2))."""

    def __init__(self, pnet: nn.Module, rnet: nn.Module, onet: nn.Module,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 factor: float = 0.709, backend: str = "torch", precision: str = "f32") -> None:
        def make(net: nn.Module, size: int | None, dtypes: tuple[str, ...]) -> NetRunner:
            return NET_BACKENDS[backend](net, size, dtypes, precision)

        # the input types each network gets: pyramid levels, R-Net's float crops, O-Net's
        # float crops (full detection) and uint8 ones (following)
        self.pnet, self.rnet = make(pnet, None, ("uint8",)), make(rnet, 24, ("float32",))
        self.onet = make(onet, 48, ("float32", "uint8"))
        self.thresholds = thresholds
        self.factor = factor

    def detect(self, image: np.ndarray, min_face_size: float) -> tuple[np.ndarray, np.ndarray]:
        img = np.ascontiguousarray(image)
        boxes = self._proposals(img, min_face_size)
        if len(boxes):
            boxes = self._refine_rnet(img, boxes)
        if len(boxes):
            return self._output_onet(img, boxes)
        return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)

    def _scales(self, h: int, w: int, min_face_size: float) -> list[float]:
        m = 12.0 / min_face_size
        minl, scales, s = min(h, w) * m, [], m
        while minl >= 12:
            scales.append(s)
            s *= self.factor
            minl *= self.factor
        return scales

    def _proposals(self, img: np.ndarray, min_face_size: float) -> np.ndarray:
        """Stage 1: P-Net over the pyramid of the uint8 image -> candidate squares (k, 5) in
        image pixels."""
        h, w = img.shape[:2]
        found, level = [], img
        for scale in self._scales(h, w, min_face_size):
            # each level from the one before: OpenCV's cost grows with the input's size
            level = cv2.resize(level, (int(w * scale + 1), int(h * scale + 1)),
                               interpolation=cv2.INTER_AREA)
            reg, probs = self.pnet(level[None])
            b = _window_boxes(reg[0], probs[0, 1], scale, self.thresholds[0])
            found.append(b[nms(b[:, :4], b[:, 4], 0.5)])
        if not found:  # image smaller than the smallest face
            return np.zeros((0, 5), np.float32)
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        wh = np.tile(boxes[:, 2:4] - boxes[:, :2], 2)
        return square(np.concatenate([boxes[:, :4] + boxes[:, 5:9] * wh, boxes[:, 4:5]], 1))

    def _refine_rnet(self, img: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Stage 2: R-Net on 24x24 crops -> surviving, regressed squares."""
        crops, boxes = _crops(img, boxes, 24)
        if len(crops) == 0:  # every box outside the image
            return np.zeros((0, 5), np.float32)
        reg, prob = self.rnet(crops)
        ok = prob[:, 1] > self.thresholds[1]
        boxes = np.concatenate([boxes[ok, :4], prob[ok, 1:2]], 1)
        keep = nms(boxes[:, :4], boxes[:, 4], 0.7)
        return square(bbreg(boxes[keep], reg[ok][keep]))

    def _output_onet(self, img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stage 3: O-Net on 48x48 crops -> final boxes, scores and landmarks."""
        crops, boxes = _crops(img, boxes, 48)
        if len(crops) == 0:
            return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
        reg, pts, prob = self.onet(crops)
        ok = prob[:, 1] > self.thresholds[2]
        boxes = np.concatenate([boxes[ok, :4], prob[ok, 1:2]], 1)
        boxes, lm = decode_onet(boxes, reg[ok], pts[ok])
        keep = nms(boxes[:, :4], boxes[:, 4], 0.7, mode="min")
        return boxes[keep], lm[keep]


def _window_boxes(reg: np.ndarray, prob: np.ndarray, scale: float, thresh: float) -> np.ndarray:
    """P-Net's windows scoring >= thresh -> (k, 9): x1 y1 x2 y2 in image pixels, score, the
    4 box offsets. reg (4, h, w), prob (h, w); windows are 12 px at stride 2 on the level."""
    ys, xs = np.nonzero(prob >= thresh)
    xy = np.stack([xs, ys], 1).astype(np.float32)
    q1 = np.floor((2 * xy + 1) / scale)
    q2 = np.floor((2 * xy + 12) / scale)
    return np.concatenate([q1, q2, prob[ys, xs, None], reg[:, ys, xs].T], 1).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float,
        mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression of boxes (n, 4) xyxy -> indices kept (k,), best first.

    mode 'union': overlap is IoU with areas w * h (torchvision's nms, used by
    facenet-pytorch's first two stages; OpenCV's NMSBoxes computes the same, in C++);
    'min': intersection over the smaller box with areas (w + 1) * (h + 1) (its final
    stage). A box overlapping a kept one by more than threshold is dropped.
    """
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    if mode == "union":
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]], 1)
        # NMSBoxes drops scores <= its score threshold, which must be >= 0
        keep = cv2.dnn.NMSBoxes(xywh.astype(np.float64), scores.astype(np.float32), 0.0,
                                threshold)
        return np.asarray(keep, np.int64).reshape(-1)
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        order = rest[w * h / np.minimum(area[i], area[rest]) <= threshold]
    return np.asarray(keep, np.int64)


def bbreg(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply R-/O-Net's box offsets reg (k, 4), in box sizes, to boxes (k, 5)."""
    out = boxes.copy()
    wh = boxes[:, 2:4] - boxes[:, :2] + 1
    out[:, :4] = boxes[:, :4] + reg * np.tile(wh, 2)
    return out


def decode_onet(boxes: np.ndarray, reg: np.ndarray, pts: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """O-Net's outputs for the squares it saw -> (boxes, landmarks) in image pixels.

    boxes (k, 4 or more) x1 y1 x2 y2 (...): the input squares; reg (k, 4) box offsets and
    pts (k, 10) landmark x's then y's, both in box sizes. Returns the regressed boxes (same
    columns, extra ones kept) and landmarks (k, 5, 2) x, y.
    """
    w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
    h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
    lm = np.stack([w * pts[:, :5] + boxes[:, :1] - 1, h * pts[:, 5:] + boxes[:, 1:2] - 1], axis=2)
    return bbreg(boxes, reg), lm


def square(boxes: np.ndarray, expand: float = 1.0) -> np.ndarray:
    """Boxes (k, 4 or more) made square with side expand x their longer side, same centres;
    columns after the 4th (a score) are kept."""
    out = boxes.copy()
    wh = boxes[:, 2:4] - boxes[:, :2]
    side = wh.max(1, keepdims=True) * expand
    out[:, :2] = boxes[:, :2] + wh * 0.5 - side * 0.5
    out[:, 2:4] = out[:, :2] + side
    return out


def to_input(batch: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) 0..255 crops -> MTCNN's input: (N, 3, H, W) float32 channels-last,
    (x - 127.5) / 128."""
    x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).permute(0, 3, 1, 2)
    return (x - 127.5) * 0.0078125


def _crops(img: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop each box of img (H, W, 3) uint8 (truncated to integers and clipped to the image,
    as facenet-pytorch's `pad`) and area-resample it to size x size -> (crops (k, size, size,
    3) float32 0..255, the boxes that had a non-empty crop)."""
    h, w = img.shape[:2]
    b = np.trunc(boxes[:, :4]).astype(np.int64)
    x, y = np.maximum(b[:, 0], 1), np.maximum(b[:, 1], 1)
    ex, ey = np.minimum(b[:, 2], w), np.minimum(b[:, 3], h)
    keep = np.flatnonzero((ey > y - 1) & (ex > x - 1))
    out = np.empty((len(keep), size, size, 3), np.float32)
    for j, k in enumerate(keep):
        # resampled in float, as facenet-pytorch does; converting only the crop, not the
        # frame (25 MB at 1080p for each stage), gives the same values
        out[j] = cv2.resize(img[y[k] - 1:ey[k], x[k] - 1:ex[k]].astype(np.float32), (size, size),
                            interpolation=cv2.INTER_AREA)
    return out, boxes[keep]
