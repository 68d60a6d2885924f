"""The annotated video's encode thread: jobs in order, errors where the caller would have
met them, a prompt abort; and annotated segments identical to drawing and encoding each
frame in turn."""
from __future__ import annotations

import errno
import threading
import time
from pathlib import Path
from typing import Callable

import av
import numpy as np
import pytest

from emobatch.batch import one_input as item_mod
from emobatch.batch.one_input import _Annotation
from emobatch.batch.store import ItemStore, WorkItem
from emobatch.config import Settings
from emobatch.errors import OutputError
from emobatch.media.annotate import VideoWriter, draw
from emobatch.media.segments import concat_mp4
from emobatch.media.encode_thread import EncodeThread
from emobatch.types import EMOTIONS, FaceBatch, Frame

FPS = 25.0


# --------------------------------------------------------------------------- EncodeThread


def test_jobs_run_in_order_on_another_thread():
    done, where = [], set()
    t = EncodeThread("t")
    for i in range(50):
        t.submit(lambda i: (done.append(i), where.add(threading.get_ident())), i)
    t.close()
    assert done == list(range(50)) and threading.get_ident() not in where


def test_submit_waits_while_depth_jobs_wait():
    gate, submitted = threading.Event(), []
    t = EncodeThread("t", depth=2)

    def feed():
        for i in range(6):
            t.submit(gate.wait)
            submitted.append(i)

    feeder = threading.Thread(target=feed)
    feeder.start()
    time.sleep(0.3)
    assert len(submitted) == 3  # one running, two waiting, the fourth blocked
    gate.set()
    feeder.join(5)
    t.close()
    assert submitted == list(range(6))


def test_an_error_is_raised_at_the_next_submit_and_later_jobs_dropped():
    done, boom = [], ValueError("boom")
    t = EncodeThread("t")

    def job(i):
        if i == 3:
            raise boom
        done.append(i)

    with pytest.raises(ValueError) as caught:
        for i in range(20):
            t.submit(job, i)
            time.sleep(0.01)
    assert caught.value is boom and done == [0, 1, 2]
    t.submit(done.append, "after")  # the caller handled it: what comes next runs
    t.close()
    assert done == [0, 1, 2, "after"]


def test_an_error_is_raised_at_close_once():
    gate, t = threading.Event(), EncodeThread("t")
    t.submit(gate.wait)
    t.submit(lambda: 1 / 0)
    gate.set()
    with pytest.raises(ZeroDivisionError):
        t.close()
    t.close()  # idempotent; the error was delivered


def test_abort_drops_waiting_jobs_and_returns_after_the_running_one():
    done, t = [], EncodeThread("t", depth=8)
    for i in range(8):
        t.submit(lambda i: (time.sleep(0.2), done.append(i)), i)
    time.sleep(0.05)
    t0 = time.monotonic()
    t.abort()
    assert time.monotonic() - t0 < 0.5 and done == [0]
    t.abort()


# --------------------------------------------------------------------------- annotation


def _frames(n: int, h: int = 96, w: int = 128) -> list[tuple[Frame, FaceBatch]]:
    """n (<= 32) frames, each a different flat grey (7 levels apart at least, in a shuffled
    order) with one face box moving across it."""
    out = []
    for i in range(n):
        img = np.full((h, w, 3), 16 + 7 * (i * 11 % 32), np.uint8)
        x = 4 + 3 * i % (w - 40)
        xyxy = np.array([[x, 20, x + 30, 60]], np.float32)
        lm = np.tile(np.array([[x + 15, 40]], np.float32), (5, 1))[None]
        probs = np.full((1, 7), 0.02, np.float32)
        probs[0, i % 7] = 0.88
        faces = FaceBatch(xyxy=xyxy, score=np.full(1, 0.97, np.float32), landmarks=lm,
                          probs=probs, track=np.array([i % 3], np.int64))
        out.append((Frame(img, Path("clip.mp4"), index=2 * i, t_sec=2 * i / FPS), faces))
    return out


def _annotation(tmp_path: Path) -> _Annotation:
    store = ItemStore(tmp_path / "store")
    item = WorkItem(0, Path("clip.mp4"), "k", annotate=tmp_path / "ann" / "clip.mp4")
    return _Annotation(item, store, Settings(every=2), EMOTIONS, None)


def _threaded(tmp_path: Path, frames, chunk_len: int) -> Path:
    ann = _annotation(tmp_path)
    chunk = 0
    for k, (frame, faces) in enumerate(frames):
        ann.write(frame, faces, chunk)
        if (k + 1) % chunk_len == 0:
            ann.end_chunk()
            assert ann.store.segment(chunk).is_file()  # on disk before any checkpoint
            chunk += 1
    ann.end_chunk()
    return ann.finish(chunk, False)


def _synchronous(path: Path, frames, chunk_len: int) -> Path:
    """Every frame drawn and encoded in turn: how annotation worked before its thread."""
    segments = []
    for c in range(0, len(frames), chunk_len):
        segments.append(path.with_name(f"seg-{c}.mp4"))
        with VideoWriter(segments[-1], FPS / 2, 128, 96) as vw:
            for frame, faces in frames[c:c + chunk_len]:
                vw.write(draw(frame.image, faces, EMOTIONS), frame.t_sec)
    return concat_mp4(segments, path)


def _decoded(path: Path) -> tuple[list[int], list[np.ndarray]]:
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
        return [f.pts for f in frames], [f.to_ndarray(format="rgb24") for f in frames]


@pytest.fixture()
def jittery_draw(monkeypatch):
    """The thread's drawing takes uneven time, so its queue fills and empties."""
    rng = np.random.default_rng(0)

    def slow(*args, **kwargs):
        time.sleep(float(rng.choice([0.0, 0.0, 0.02])))
        return draw(*args, **kwargs)

    monkeypatch.setattr(item_mod, "draw", slow)


def test_threaded_annotation_equals_drawing_each_frame_in_turn(tmp_path, jittery_draw):
    frames = _frames(40)
    threaded = _threaded(tmp_path, frames, chunk_len=13)
    reference = _synchronous(tmp_path / "ref" / "clip.mp4", frames, chunk_len=13)
    assert threaded.read_bytes() == reference.read_bytes()
    (pts, images), (ref_pts, ref_images) = _decoded(threaded), _decoded(reference)
    assert pts == ref_pts and all(np.array_equal(a, b) for a, b in zip(images, ref_images))


def test_annotated_frames_are_neither_dropped_nor_reordered(tmp_path, jittery_draw):
    frames = _frames(30)
    pts, images = _decoded(_threaded(tmp_path, frames, chunk_len=7))
    assert pts == [round(f.t_sec * 90000) for f, _ in frames]
    # each decoded frame's background is its own frame's grey (a few levels of H.264 error)
    greys = np.array([f.image[90, 120, 0] for f, _ in frames], float)
    for k, img in enumerate(images):
        assert np.argmin(np.abs(greys - float(img[90, 120, 0]))) == k


@pytest.mark.parametrize("fail_at", [5, 20])  # 20, the last frame: raised by end_chunk()
def test_a_failed_encode_raises_the_output_error_of_a_synchronous_one(tmp_path, monkeypatch,
                                                                      fail_at):
    real_write, calls = VideoWriter.write, []

    def full_disk(self, image, t_sec=None):
        calls.append(t_sec)
        if len(calls) == fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, image, t_sec)

    monkeypatch.setattr(VideoWriter, "write", full_disk)
    ann = _annotation(tmp_path)
    with pytest.raises(OutputError) as caught:
        for frame, faces in _frames(20):
            ann.write(frame, faces, 0)
        ann.end_chunk()
    assert str(caught.value) == ("cannot write the annotated output of clip.mp4: "
                                 "No space left on device")
    assert len(calls) == fail_at  # nothing encoded after the failure
    ann.abort()  # as process_item does on an OutputError (end_chunk() did already)
    assert list(ann.store.dir.iterdir()) == []  # the partial segment is gone


def _draw_failing_at(n: int, calls: list) -> Callable:
    """draw, except that its n-th call raises ValueError('bad frame'); `calls` counts them."""
    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise ValueError("bad frame")
        return draw(*args, **kwargs)
    return flaky


def test_another_error_publishes_the_frames_before_it(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(item_mod, "draw", _draw_failing_at(5, calls))
    ann = _annotation(tmp_path)
    with pytest.raises(ValueError, match="bad frame"):
        for frame, faces in _frames(6):
            ann.write(frame, faces, 0)
        ann.end_chunk()
    ann.end_chunk()  # as process_item does after an unexpected error
    assert len(_decoded(ann.store.segment(0))[0]) == 4 and len(calls) == 5


def test_abort_stops_the_thread_promptly_and_leaves_no_segment(tmp_path, monkeypatch):
    def slow(*args, **kwargs):
        time.sleep(0.1)
        return draw(*args, **kwargs)

    monkeypatch.setattr(item_mod, "draw", slow)
    ann = _annotation(tmp_path)
    for frame, faces in _frames(8):
        ann.write(frame, faces, 0)
    time.sleep(0.15)  # the first frame encoded, the second being drawn, six waiting
    t0 = time.monotonic()
    ann.abort()
    assert time.monotonic() - t0 < 0.5
    assert not [t for t in threading.enumerate() if t.name.startswith("emobatch-annotate")]
    assert list(ann.store.dir.iterdir()) == []


def test_an_encoding_error_after_the_input_failed_does_not_end_the_run(tmp_path, monkeypatch):
    """A frame fails to draw on the thread while the stream itself then breaks (a truncated
    video): process_item records the input's error and returns; nothing escapes."""
    from emobatch.errors import InputError
    from emobatch.batch.one_input import process_item

    calls: list = []

    class Pipe:  # the stream of a video that breaks after 3 frames
        settings = Settings(every=2)
        classifier = type("C", (), {"labels": EMOTIONS})

        def stream(self, path, start, info):
            yield from _frames(3)
            time.sleep(0.3)  # the encode thread fails meanwhile
            raise InputError("truncated video")

    src = tmp_path / "clip.mp4"
    src.write_bytes(b"x")
    monkeypatch.setattr(item_mod, "draw", _draw_failing_at(3, calls))
    monkeypatch.setattr(item_mod, "kind_of", lambda p: "video")
    monkeypatch.setattr(item_mod, "_header", lambda p, k: None)
    item = WorkItem(0, src, "k", annotate=tmp_path / "ann" / "clip.mp4")
    res = process_item(Pipe(), item, ItemStore(tmp_path / "store"))
    assert res.error == "truncated video" and res.frames == 3 and len(calls) == 3
