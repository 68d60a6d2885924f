"""MTCNN's three networks, P-, R- and O-Net: facenet-pytorch's definitions with the weight
files from its wheel, as plain nn layers that emobatch.faces.invariant_layers makes thread-invariant."""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..device import CPU
from ..invariant_layers import invariant_layers, softmax_dim1


def weights_dir() -> Path:
    """facenet-pytorch's folder of MTCNN weights, found without importing the package."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("facenet-pytorch is not installed: emobatch uses its MTCNN weights")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


NET_NAMES = ("pnet", "rnet", "onet")


def nets_sha256() -> str:
    """One sha256 over the three networks' weight files, in cascade order: what a run records
    of them (another facenet-pytorch version may ship other weights)."""
    h = hashlib.sha256()
    for name in NET_NAMES:
        h.update((weights_dir() / f"{name}.pt").read_bytes())
    return h.hexdigest()


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


def load_nets(device: torch.device = CPU) -> tuple[PNet, RNet, ONet]:
    """P-, R- and O-Net with facenet-pytorch's trained weights, in eval mode, their layers'
    results independent of the thread count (emobatch.faces.invariant_layers)."""
    nets = []
    for cls, name in zip((PNet, RNet, ONet), NET_NAMES):
        net = cls()
        net.load_state_dict(torch.load(weights_dir() / f"{name}.pt", map_location="cpu",
                                       weights_only=True))
        nets.append(invariant_layers(net).to(device).eval())
    return nets[0], nets[1], nets[2]


def to_input(batch: np.ndarray | torch.Tensor, device: torch.device = CPU
             ) -> torch.Tensor:
    """(N, H, W, 3) 0..255 crops, uint8 or float32 (numpy, or a tensor already cut on the
    device) -> MTCNN's input on `device`: (N, 3, H, W) float32 channels-last,
    (x - 127.5) / 128. The batch travels as it is and is converted there (uint8 frames cross
    to a GPU in a quarter of the bytes)."""
    if not isinstance(batch, torch.Tensor):
        batch = torch.from_numpy(np.ascontiguousarray(batch))
    x = batch.to(device).permute(0, 3, 1, 2)
    return (x.float() - 127.5) * 0.0078125
