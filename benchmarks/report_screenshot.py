"""Screenshot of a timeline's HTML report in headless Chromium (the README's docs/report-1080p.png):

    emobatch run ../shared/data/media/videos/facenet_pytorch_video.mp4 --out /tmp/s/r.parquet --annotate /tmp/s/ann
    python benchmarks/report_screenshot.py /tmp/s/r.parquet --annotate /tmp/s/ann --png docs/report-1080p.png

The page is opened from a file:// URL, the first video is sought to --at seconds by a click
on its first plot (so the frame and the playhead show), and the top --height px are saved
as a 256-colour PNG (a third of the size of Chromium's, the same to the eye).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import cdp  # noqa: E402  (the tests' Chromium driver)
from emobatch.report import write_report  # noqa: E402

SEEK = """new Promise(done => {
  const chart = document.querySelector('.chart'), video = document.querySelector('video');
  const box = chart.getBoundingClientRect(), dur = +chart.closest('section').dataset.dur;
  video.addEventListener('seeked', () => setTimeout(() => done(video.currentTime), 300), {once: true});
  chart.dispatchEvent(new MouseEvent('click', {bubbles: true, clientX: box.left + box.width * %f / dur}));
})"""


def _palette(png: Path) -> None:
    """Rewrite png with 256 colours (flat UI colours, one video frame: no visible loss)."""
    from PIL import Image

    with Image.open(png) as im:
        small = im.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE,
                                           dither=Image.Dither.NONE)
    small.save(png, optimize=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("timeline", type=Path)
    p.add_argument("--annotate", type=Path, default=None)
    p.add_argument("--png", type=Path, required=True)
    p.add_argument("--at", type=float, default=2.0, help="seconds into the first video")
    p.add_argument("--height", type=int, default=1700)
    p.add_argument("--width", type=int, default=1280)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, cdp.Browser(a.width, 900) as browser:
        page = write_report(a.timeline, Path(tmp) / "report.html", annotate_dir=a.annotate)
        browser.open(page)
        print(f"sought to {browser.js(SEEK % a.at):.2f} s")
        if browser.problems():
            sys.exit(f"page problems: {browser.problems()}")
        browser.screenshot(a.png, a.height)
    _palette(a.png)
    print(f"wrote {a.png}")


if __name__ == "__main__":
    main()
