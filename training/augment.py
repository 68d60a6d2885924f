"""Batch-level augmentation on tensors (N, 1, H, W): random affine + flip, random erasing, mixup."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def random_affine(x: torch.Tensor, max_deg: float = 10.0, max_shift: float = 0.1,
                  scale: tuple[float, float] = (0.9, 1.1), flip: bool = True,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotate, shift, scale and horizontally flip each image independently (border: reflect)."""
    n = x.shape[0]
    g = generator

    def u(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, generator=g) * (hi - lo) + lo

    ang = u(-max_deg, max_deg) * math.pi / 180
    s = u(*scale)
    sx = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    theta = torch.stack([
        torch.stack([cos * sx, -sin, u(-max_shift, max_shift) * 2], 1),
        torch.stack([sin * sx, cos, u(-max_shift, max_shift) * 2], 1),
    ], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def random_erasing(x: torch.Tensor, p: float = 0.5, area: tuple[float, float] = (0.02, 0.2),
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero one random rectangle (aspect 0.3..3.3) per image with probability p."""
    n, _, h, w = x.shape
    g = generator
    a = (torch.rand(n, generator=g) * (area[1] - area[0]) + area[0]) * h * w
    r = torch.exp(torch.rand(n, generator=g) * (math.log(3.3) - math.log(0.3)) + math.log(0.3))
    eh = (a * r).sqrt().clamp(1, h)
    ew = (a / r).sqrt().clamp(1, w)
    y0 = torch.rand(n, generator=g) * (h - eh)
    x0 = torch.rand(n, generator=g) * (w - ew)
    ys = torch.arange(h).view(1, h, 1)
    xs = torch.arange(w).view(1, 1, w)
    m = ((ys >= y0.view(n, 1, 1)) & (ys < (y0 + eh).view(n, 1, 1))
         & (xs >= x0.view(n, 1, 1)) & (xs < (x0 + ew).view(n, 1, 1)))
    m &= (torch.rand(n, generator=g) < p).view(n, 1, 1)
    return x.masked_fill(m.unsqueeze(1), 0.0)


def mixup(x: torch.Tensor, alpha: float, generator: torch.Generator | None = None
          ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Blend the batch with a shuffled copy of itself: lam * x + (1 - lam) * x[perm], with
    lam ~ Beta(alpha, alpha). Returns the mixed batch, perm (N,) and lam; the loss is
    lam * CE(y) + (1 - lam) * CE(y[perm]). Mixup rather than cutmix: the faces are aligned,
    and pasting one face's mouth onto another mixes the expression far from the area ratio."""
    g = generator
    seed = int(torch.randint(2**31 - 1, (1,), generator=g))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], generator=g)
    return lam * x + (1 - lam) * x[perm], perm, lam
