"""CPU layers whose results do not depend on torch's thread count.

`--workers N` and Dask run each input with fewer threads than one process does, and their
timelines must equal its timeline bit for bit. torch's own CPU kernels do not promise that:
on an AMD EPYC (Zen 4) these moved outputs by 1e-9 to 1e-6 between 1 and 2 threads, enough
to move a face's box, while an Intel Xeon happened to round alike:

- `nn.Conv2d` with a 1x1 kernel (or a small input) and one thread takes torch's own
  algorithm, with more threads oneDNN's;
- `nn.Linear` calls MKL, whose products with a few outputs (O-Net's 10 landmark
  coordinates) split their sums differently with more threads, `MKL_CBWR` or not;
- softmax over a dimension other than the last splits its rows between threads, and each
  part's tail takes a scalar `exp` that rounds unlike the vector one.

The layers here take oneDNN's convolution on a CPU in fp32 without autograd (it splits work
over outputs only) and fall back to torch's own elsewhere (CUDA, autocast, training).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _cpu_autocast_query():
    try:
        torch.is_autocast_enabled("cpu")
        return lambda: torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled


_cpu_autocast = _cpu_autocast_query()
_ONEDNN = torch.backends.mkldnn.is_available()


def _onednn_fp32(x: torch.Tensor) -> bool:
    """x would run in fp32 on a CPU, with no autograd and no autocast around it."""
    return (_ONEDNN and x.device.type == "cpu" and x.dtype == torch.float32
            and not torch.is_grad_enabled() and not _cpu_autocast())


class Conv2d(nn.Conv2d):
    """nn.Conv2d, always through oneDNN where `_onednn_fp32`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (not _onednn_fp32(x) or self.padding_mode != "zeros"
                or isinstance(self.padding, str)):
            return super().forward(x)
        return torch.ops.aten.mkldnn_convolution(x, self.weight, self.bias, list(self.padding),
                                                 list(self.stride), list(self.dilation),
                                                 self.groups)


class Linear(nn.Linear):
    """nn.Linear as a 1x1 convolution through oneDNN where `_onednn_fp32`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _onednn_fp32(x):
            return super().forward(x)
        n, k = self.weight.shape
        y = torch.ops.aten.mkldnn_convolution(x.reshape(-1, k, 1, 1),
                                              self.weight.reshape(n, k, 1, 1), self.bias,
                                              [0, 0], [1, 1], [1, 1], 1)
        return y.reshape(*x.shape[:-1], n)


def invariant_layers(model: nn.Module) -> nn.Module:
    """model with each plain nn.Conv2d / nn.Linear turned into the classes above, in place
    (same parameters and state dict keys). For inference models only: PyTorch's quantisation
    does not recognise the subclasses."""
    for m in model.modules():
        if type(m) is nn.Conv2d:
            m.__class__ = Conv2d
        elif type(m) is nn.Linear:
            m.__class__ = Linear
    return model


def softmax_dim1(x: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 1; in numpy (one thread) where `_onednn_fp32`, else torch's."""
    if not _onednn_fp32(x):
        return x.softmax(1)
    a = np.ascontiguousarray(x.numpy())  # numpy on channels-last strides is far slower
    e = np.exp(a - a.max(1, keepdims=True))
    e /= e.sum(1, keepdims=True)
    return torch.from_numpy(e)
