"""An annotated video's segments (one per checkpoint interval, written by VideoWriter)
joined into its MP4 without re-encoding, and what a segment's size is."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import av

from ..atomic import atomic_path


def _shift_after(first: av.Packet, last_pts: tuple[int, int] | None) -> int:
    """Ticks to add to a segment whose first packet is `first` so it plays after the frames
    joined so far (last_pts: their latest pts and its duration): 0 unless its timestamps
    jump back (MPEG-TS recordings joined with `cat`), when it continues one frame later."""
    if last_pts is None or first.pts is None or first.pts > last_pts[0]:
        return 0
    return last_pts[0] + last_pts[1] - first.pts


def video_size(path: Path) -> tuple[int, int]:
    """(width, height) of an MP4's video stream, as written (even)."""
    with av.open(str(path)) as c:
        ctx = c.streams.video[0].codec_context
        return int(ctx.width), int(ctx.height)


def concat_mp4(segments: Sequence[Path], path: Path) -> Path:
    """Join MP4 segments written by VideoWriter (same size and settings; absolute timestamps)
    into one MP4 at `path`, atomically, without re-encoding."""
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream, last_dts, last_pts = None, None, None
            for seg in segments:
                with av.open(str(seg)) as src:
                    video = src.streams.video[0]
                    if stream is None:
                        stream = out.add_stream_from_template(video)
                    shift = None
                    for packet in src.demux(video):
                        if packet.dts is None:  # the demuxer's end-of-stream marker
                            continue
                        if shift is None:
                            shift = _shift_after(packet, last_pts)
                        packet.dts += shift
                        packet.pts = None if packet.pts is None else packet.pts + shift
                        if packet.pts is not None and (last_pts is None or packet.pts > last_pts[0]):
                            last_pts = (packet.pts, packet.duration or 1)
                        if last_dts is not None and packet.dts <= last_dts:
                            packet.dts = last_dts + 1  # B-frame delay across a join
                        last_dts = packet.dts
                        packet.stream = stream
                        out.mux(packet)
    return Path(path)
