"""Make the sample inputs in examples/sample/ from scikit-image's astronaut photo.

    pip install scikit-image   # only needed for this script, not by emobatch
    python examples/make_sample.py

Writes:
  sample/astronaut.jpg       512x512 JPEG, quality 90
  sample/astronaut_clip.mp4  320x320 H.264 (yuv420p, fast start), 15 fps, 2 s: a slow
                             zoom from the upper body onto the face; the face stays fully
                             in view in every frame.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

OUT_DIR = Path(__file__).resolve().parent / "sample"
SIZE = 320          # output width = height, pixels
FPS = 15
N_FRAMES = 30       # 2 s
# Square crop windows (center x, center y, side) in the 512x512 source, eased from
# START to END. The face is at about x 150-300, y 15-165 in the source.
START = (240.0, 220.0, 440.0)
END = (225.0, 120.0, 250.0)


def load_astronaut() -> np.ndarray:
    """(512, 512, 3) uint8 RGB: NASA portrait of Eileen Collins (public domain)."""
    from skimage import data  # imported here: scikit-image is a script-only dependency
    return data.astronaut()


def crop_window(t: float) -> tuple[float, float, float]:
    """(x0, y0, side) of the crop at t in [0, 1]: smoothstep-eased, kept inside the image."""
    e = t * t * (3 - 2 * t)
    cx, cy, side = (a + (b - a) * e for a, b in zip(START, END))
    x0 = min(max(cx - side / 2, 0.0), 512 - side)
    y0 = min(max(cy - side / 2, 0.0), 512 - side)
    return x0, y0, side


def render(image: np.ndarray, t: float) -> np.ndarray:
    """One (SIZE, SIZE, 3) uint8 RGB frame: the crop at t scaled with sub-pixel precision."""
    x0, y0, side = crop_window(t)
    s = SIZE / side
    m = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]], dtype=np.float64)
    return cv2.warpAffine(image, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def write_clip(image: np.ndarray, path: Path) -> None:
    """Encode the zoom as browser-playable H.264 (yuv420p, moov at the front)."""
    container = av.open(str(path), "w", options={"movflags": "+faststart"})
    stream = container.add_stream("libx264", rate=Fraction(FPS))
    stream.width = stream.height = SIZE
    stream.pix_fmt = "yuv420p"
    stream.codec_context.options = {"crf": "23", "preset": "medium", "profile": "high"}
    for i in range(N_FRAMES):
        frame = av.VideoFrame.from_ndarray(render(image, i / (N_FRAMES - 1)), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    image = load_astronaut()
    Image.fromarray(image).save(OUT_DIR / "astronaut.jpg", quality=90)
    write_clip(image, OUT_DIR / "astronaut_clip.mp4")
    for name in ("astronaut.jpg", "astronaut_clip.mp4"):
        print(f"{OUT_DIR / name}: {(OUT_DIR / name).stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
