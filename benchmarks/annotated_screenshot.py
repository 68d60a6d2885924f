"""Screenshot of one frame of an annotated MP4 as Chromium plays it (docs/annotated-crowd.png):

    emobatch run ../shared/data/media/videos/facenet_pytorch_video.mp4 --out /tmp/s/r.parquet --annotate /tmp/s/ann
    python benchmarks/annotated_screenshot.py /tmp/s/ann/facenet_pytorch_video.mp4 --png docs/annotated-crowd.png

A bare page shows the video --width px wide, sought to --at seconds; the shot is reduced to
a 256-colour palette (--colours) to keep the PNG small.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import cdp  # noqa: E402  (the tests' Chromium driver)

PAGE = """<!doctype html><html><body style="margin:0;background:#000">
<video src="%s" muted preload="auto" style="display:block;width:100%%"></video></body></html>"""
SEEK = """new Promise(done => {
  const video = document.querySelector('video');
  const go = () => { video.addEventListener('seeked', () => setTimeout(() => done(video.currentTime), 300), {once: true});
                     video.currentTime = %f; };
  if (video.readyState >= 1) go(); else video.addEventListener('loadedmetadata', go, {once: true});
})"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("video", type=Path)
    p.add_argument("--png", type=Path, required=True)
    p.add_argument("--at", type=float, default=0.0, help="seconds into the video")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--colours", type=int, default=256)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, cdp.Browser(a.width, a.width * 9 // 16) as browser:
        page = Path(tmp) / "frame.html"
        page.write_text(PAGE % a.video.resolve().as_uri())
        browser.open(page)
        print(f"sought to {browser.js(SEEK % a.at):.2f} s")
        if browser.problems():
            sys.exit(f"page problems: {browser.problems()}")
        shot = Path(tmp) / "shot.png"
        browser.screenshot(shot)
        Image.open(shot).convert("RGB").quantize(a.colours).save(a.png, optimize=True)
    print(f"wrote {a.png} ({a.png.stat().st_size // 1024} kB)")


if __name__ == "__main__":
    main()
