"""Photos: one image file -> a Frame of (H, W, 3) uint8 RGB, upright (EXIF orientation
applied), transparency on white, 16-bit scaled to 8; problems are InputErrors."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import InputError
from ..types import Frame
from .filetypes import check_file

MAX_IMAGE_PIXELS = 200_000_000
"""Images with more pixels than this raise InputError (decompression-bomb guard)."""


def raise_pillow_limit() -> None:
    """Make Pillow's own guard no stricter than MAX_IMAGE_PIXELS, process-wide.

    Pillow warns above Image.MAX_IMAGE_PIXELS and refuses twice that (default ~89 M / ~179
    M pixels). read_image checks MAX_IMAGE_PIXELS itself, so in a process emobatch owns
    (`emobatch.batch.process_tuning.configure_process`) ours is the one that counts; as a library it
    leaves Pillow's setting to the application, whose stricter limit then applies.
    """
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


_BACKGROUND = (255, 255, 255)
"""Transparent pixels are composited onto white (how most viewers show them)."""


def _bit_depth(img: Image.Image, arr: np.ndarray) -> int:
    """Bits per sample of an integer grey image ('I;16*' or 'I'), for scaling to 8 bit.

    Uses the declared depth (mode, TIFF BitsPerSample, PNG's 16-bit max) when
    known, otherwise the smallest of 8/16/32 that holds the values.
    """
    if img.mode.startswith("I;16"):
        return 16
    tag = getattr(img, "tag_v2", None)  # TIFF
    if tag is not None and 258 in tag:
        bits = tag[258]
        return int(bits[0] if isinstance(bits, tuple) else bits)
    if img.format == "PNG":
        return 16
    peak = int(arr.max(initial=0))
    return 8 if peak < 2**8 else 16 if peak < 2**16 else 32


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8 RGB.

    Alpha / palette transparency is composited on white. 16/32-bit integer
    grey is scaled by its bit depth (65535 -> 255), not clipped. Float ('F')
    in [0, 1] is scaled by 255, any other range is min-max normalised.
    """
    mode = img.mode
    if mode == "RGB":
        return np.array(img, dtype=np.uint8)
    if mode.startswith("I"):  # I, I;16, I;16B, I;16L, I;16N ...
        arr = np.asarray(img).astype(np.float64)
        scale = 255.0 / (2 ** _bit_depth(img, arr) - 1)
        grey = np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
        if lo < 0.0 or hi > 1.0:
            arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        grey = np.rint(arr * 255.0).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if "A" in mode or "a" in mode or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
        return np.array(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8)
    return np.array(img.convert("RGB"), dtype=np.uint8)  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _open_image(path: Path) -> Image.Image:
    """Open + fully decode (so truncation shows up now) + size guard; first frame only."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except FileNotFoundError:
        raise InputError("file not found") from None
    except PermissionError:
        raise InputError("permission denied") from None
    except Image.DecompressionBombError as exc:
        raise _over_pillow_limit(exc) from None
    except Exception as exc:  # UnidentifiedImageError, SyntaxError, struct.error, ...
        raise InputError(f"not a decodable image: {exc}") from exc
    n_pixels = img.width * img.height
    if n_pixels > MAX_IMAGE_PIXELS:
        img.close()
        raise InputError(f"image too large: {img.width}x{img.height} = {n_pixels} pixels "
                         f"(limit {MAX_IMAGE_PIXELS})")
    try:
        img.load()  # first frame of multi-frame files (GIF/TIFF pages)
    except Exception as exc:  # OSError('image file is truncated ...'), ValueError, ...
        img.close()
        raise InputError(f"truncated or corrupt image: {exc}") from exc
    return img


def _over_pillow_limit(exc: Image.DecompressionBombError) -> InputError:
    """Pillow's refusal as our InputError, with the pixel count Pillow's message gives."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{found.group(1)} pixels" if found else "too many pixels"
    return InputError(f"image too large: {size}, over the limit of {2 * Image.MAX_IMAGE_PIXELS} "
                      f"(twice Pillow's Image.MAX_IMAGE_PIXELS; the emobatch command allows "
                      f"{MAX_IMAGE_PIXELS})")


def read_image(path: Path) -> Frame:
    """Decode a still image into Frame(image=(H, W, 3) uint8 RGB, index=0, t_sec=None).

    EXIF orientation is applied; every Pillow mode is converted to RGB (see
    `_to_rgb`); the first frame of multi-frame files is used. Missing,
    unreadable, zero-byte, undecodable, truncated or too large -> InputError; so does a mode
    Pillow cannot convert, or too little memory to, each said as such. Anything else (a bug)
    propagates.
    """
    path = Path(path)
    check_file(path)
    img = _open_image(path)
    try:
        try:
            upright = ImageOps.exif_transpose(img)
        except Exception:  # broken EXIF block: keep the pixels as stored
            upright = img
        rgb = _to_rgb(upright)
    except MemoryError:
        raise InputError(f"not enough memory to convert this {img.width}x{img.height} "
                         f"{img.mode} image") from None
    except (ValueError, OSError, KeyError, TypeError) as exc:  # Pillow's "cannot convert"
        raise InputError(f"unsupported image mode {img.mode!r}: {exc}") from exc
    finally:
        img.close()
    return Frame(image=rgb, source=path, index=0, t_sec=None)
