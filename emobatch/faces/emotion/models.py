"""CNN architectures for 48x48 grayscale faces, registered by name."""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        ARCHITECTURES[name] = fn
        return fn
    return deco


def build_model(name: str, num_classes: int = 7, **kwargs) -> nn.Module:
    """Instantiate a registered architecture by name."""
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name](num_classes=num_classes, **kwargs)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of model in which every Conv2d directly followed by a BatchNorm2d
    inside an nn.Sequential is one conv with the normalisation folded in: the same outputs
    (to rounding) for less inference time on a CPU (docs/experiments.md)."""
    model = copy.deepcopy(model).eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                seq[i + 1] = nn.Identity()
    return model


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class VGGNet(nn.Module):
    """VGG-style net: stages of 3x3 conv-BN-ReLU blocks, each followed by 2x2 max-pool.

    Input (N, 1, H, W) float, any H, W >= 16 (adaptive pooling before the head).
    Output (N, num_classes) logits.
    """

    def __init__(self, widths: tuple[int, ...], depth: int = 2, num_classes: int = 7,
                 dropout: float = 0.3, pool: int = 1, hidden: int = 256) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for w in widths:
            for _ in range(depth):
                layers += _conv_bn(cin, w)
                cin = w
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        # pool > 1 keeps a pool x pool spatial grid for the head: where a feature fires
        # (mouth vs. eyes) matters for expressions, which global pooling throws away
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(pool), nn.Flatten(), nn.Dropout(dropout),
            nn.Linear(cin * pool * pool, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register("vgg_s")
def vgg_s(num_classes: int = 7, **kw) -> nn.Module:
    """~1.2M parameters: fast, for smoke tests and quick runs."""
    return VGGNet((32, 64, 128, 256), num_classes=num_classes, **kw)


@register("vgg_m")
def vgg_m(num_classes: int = 7, **kw) -> nn.Module:
    """~4.8M parameters: the default recipe's network."""
    return VGGNet((64, 128, 256, 512), num_classes=num_classes, **kw)


@register("vgg_f")
def vgg_f(num_classes: int = 7, dropout: float = 0.5, **kw) -> nn.Module:
    """~7.2M parameters: vgg_m's features with a 3x3-grid head (as in Khaireddin & Chen's
    VGGNet, whose head is much larger). Measured with the default recipe: it trails vgg_m
    at every epoch (README, The model), so vgg_m stays the default."""
    return VGGNet((64, 128, 256, 512), num_classes=num_classes, dropout=dropout, pool=3,
                  hidden=512, **kw)


@register("tiny")
def tiny(num_classes: int = 7, **kw) -> nn.Module:
    """A few thousand parameters, only for tests."""
    return VGGNet((8, 16), depth=1, num_classes=num_classes, **kw)
