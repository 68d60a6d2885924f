"""Tests for emobatch.batch.annotated: the annotated outputs drawn from the store's rows once
the person ids exist (end to end, with real persons: tests/test_people.py; resume, workers
and Dask: tests/test_resume.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from emobatch.batch.annotated import AnnotateJob, annotate_input, frame_faces
from emobatch.batch.sinks import RowBuffer
from emobatch.batch.store import WorkItem
from emobatch.config import Settings
from emobatch.media.annotate import VideoWriter, draw, tag_rects, write_image
from emobatch.media.sources import video_info
from emobatch.pipeline import FacePipeline
from emobatch.types import EMOTIONS, FaceBatch, Frame

from conftest import SAMPLE

CLIP, PHOTO = SAMPLE / "astronaut_clip.mp4", SAMPLE / "astronaut.jpg"


@pytest.fixture(scope="module")
def pipe() -> FacePipeline:
    return FacePipeline(Settings(device="cpu", people="off"))


@pytest.mark.parametrize("source", [PHOTO, CLIP], ids=["photo", "clip"])
def test_an_output_drawn_from_the_rows_is_the_one_drawn_while_streaming(pipe, source, tmp_path):
    """Without persons, the output drawn from the rows the store keeps, over a second decode,
    is byte for byte the one drawn from each (frame, faces) as the pipeline gave them: the
    rows hold everything drawn (boxes, landmarks, probabilities, tracks) exactly."""
    labels, rows, drawn, found = pipe.classifier.labels, RowBuffer(pipe.classifier.labels), [], 0
    for frame, faces in pipe.frames(source):
        rows.add(frame, faces)
        drawn.append((frame, draw(frame.image, faces, labels, still=frame.t_sec is None)))
        found += len(faces)
    assert found == len(drawn)  # a face in every frame: its box, landmarks and tag drawn
    item = WorkItem(0, source, "key", tmp_path / "drawn" / source.name)
    path, error = annotate_input(AnnotateJob(item, [rows.take()], None, labels, pipe.settings))
    assert error is None and path == item.annotate
    expected = tmp_path / "expected" / source.name
    if source == CLIP:
        h, w = drawn[0][1].shape[:2]
        with VideoWriter(expected, video_info(CLIP).fps, w, h) as writer:
            for frame, img in drawn:
                writer.write(img, frame.t_sec)
        assert len(drawn) == 30
    else:
        write_image(expected, drawn[0][1])
    assert path.read_bytes() == expected.read_bytes()


def _faces(tracks: list[int]) -> FaceBatch:
    n = len(tracks)
    xyxy = np.array([[20 + 60 * i, 30, 60 + 60 * i, 80] for i in range(n)], np.float32).reshape(n, 4)
    probs = np.full((n, 7), 0.02, np.float32)
    probs[:, EMOTIONS.index("happy")] = 0.88
    return FaceBatch(xyxy, np.full(n, 0.97, np.float32), np.ones((n, 5, 2), np.float32),
                     probs=probs, track=np.array(tracks, np.int64))


def test_tags_read_the_rows_person_else_the_track(tmp_path):
    """The rows of two parts (frame 0: two tracked faces, frame 1: none, frame 2: one face
    and an untracked one) with the persons the timeline gives them: each face's tag names
    its person, a face without one keeps today's tag."""
    image = np.zeros((100, 200, 3), np.uint8)
    frames = [(0, _faces([0, 1])), (1, _faces([])), (2, _faces([1, -1]))]
    parts = []
    for index, faces in frames:
        rows = RowBuffer()
        rows.add(Frame(image, tmp_path / "v.mp4", index, index / 10), faces)
        parts.append(rows.take())
    parts = [pa.concat_tables(parts[:2]), parts[2]]
    persons = np.array(["p1", "alice", None, "alice", None], object)  # a row per face, or frame
    got = [(i, tag_rects(faces, 100, 200, persons=who)[0])
           for i, faces, who in frame_faces(parts, persons, EMOTIONS)]
    assert got == [(0, ["p1 happy 0.88", "alice happy 0.88"]), (1, []),
                   (2, ["alice happy 0.88", "happy 0.88"])]
    off = [tag_rects(faces, 100, 200, persons=who)[0]
           for _, faces, who in frame_faces(parts, None, EMOTIONS)]  # --people off
    assert off == [["#0 happy 0.88", "#1 happy 0.88"], [], ["#1 happy 0.88", "happy 0.88"]]


def test_a_photo_tag_names_its_person_else_its_face_index():
    faces = _faces([-1, -1])
    assert tag_rects(faces, 100, 200, still=True, persons=["p3", None])[0] == [
        "p3 happy 0.88", "#1 happy 0.88"]


def test_an_input_that_no_longer_decodes_as_before_is_its_error(pipe, tmp_path):
    """Rows of frames the input does not have (it changed during the run): no output, a
    reason, and no temp file left."""
    rows = RowBuffer()
    for index in (0, 1, 99):
        rows.add(Frame(np.zeros((4, 4, 3), np.uint8), CLIP, index, index / 15), _faces([]))
    item = WorkItem(0, CLIP, "key", tmp_path / "ann" / "clip.mp4")
    path, error = annotate_input(AnnotateJob(item, [rows.take()], None, EMOTIONS, pipe.settings))
    assert path is None and "frame 99 did not decode again" in error
    assert not list((tmp_path / "ann").iterdir())
