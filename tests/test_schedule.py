import numpy as np
import pytest
import torch

import emobatch
from conftest import SAMPLE
from emobatch.config import Settings
from emobatch.faces.tracking.classify_schedule import ClassifySchedule, resolve_classify_every
from emobatch.faces.state_json import dumps, loads
from emobatch.types import EMOTIONS, FaceBatch

RAW = [f"{e}_raw" for e in EMOTIONS]


def faces(tracks) -> FaceBatch:
    n = len(tracks)
    return FaceBatch(np.zeros((n, 4), np.float32), np.ones(n, np.float32),
                     np.zeros((n, 5, 2), np.float32), track=np.asarray(tracks, np.int64))


def classifier(frame: int, track: int) -> np.ndarray:
    """A made-up classification (7,) of one face, the same for the same frame and track."""
    return np.random.default_rng([frame, track + 1]).dirichlet(np.ones(7)).astype(np.float32)


def run(schedule: ClassifySchedule, frames, first: int = 0):
    """Pick every frame first, then fill them in order, as the pipeline does with a buffer:
    (masks, probabilities of every face, the probabilities the classifier gave)."""
    masks = [schedule.pick(faces(t), first + i) for i, t in enumerate(frames)]
    given = [np.array([classifier(first + i, t) for t in np.asarray(ts)[m]], np.float32).reshape(-1, 7)
             for i, (ts, m) in enumerate(zip(frames, masks))]
    out = [schedule.fill(faces(t), m, p) for t, m, p in zip(frames, masks, given)]
    return masks, out, given


def test_a_track_is_classified_when_it_starts_then_every_nth_frame():
    masks, out, given = run(ClassifySchedule(3), [[0]] * 7)
    assert [bool(m[0]) for m in masks] == [True, False, False, True, False, False, True]
    for k in (1, 2):  # carried: exactly the track's last classification
        np.testing.assert_array_equal(out[k].probs, given[0])
        np.testing.assert_array_equal(out[k].probs_raw, given[0])
    np.testing.assert_array_equal(out[3].probs, given[3])
    assert [bool(o.classified[0]) for o in out] == [bool(m[0]) for m in masks]


def test_new_returning_and_untracked_faces_are_classified():
    frames = [[0], [0, 1], [0, 1, -1], [1, -1], [0, 1]]
    masks, out, given = run(ClassifySchedule(2), frames)
    assert [m.tolist() for m in masks] == [
        [True], [False, True], [True, False, True], [True, True], [True, False]]
    # track 0 missed frame 3: classified again on its return, not carried from frame 2
    np.testing.assert_array_equal(out[4].probs[0], given[4][0])
    np.testing.assert_array_equal(out[4].probs[1], given[3][0])  # track 1 carried


def test_every_one_or_untracked_classifies_every_face():
    masks, out, _ = run(ClassifySchedule(1), [[0, 1]] * 3)
    assert all(m.all() for m in masks) and all(o.classified.all() for o in out)
    s = ClassifySchedule(4)
    assert s.pick(FaceBatch(np.zeros((2, 4), np.float32), np.ones(2, np.float32),
                            np.zeros((2, 5, 2), np.float32)), 0.0).tolist() == [True, True]
    # a video frame without a time: its "tracks" are face indices, nothing is carried
    s.fill(faces([0, 1]), s.pick(faces([0, 1]), 0.0), np.ones((2, 7), np.float32) / 7)
    assert s.pick(faces([0, 1]), None).all() and s.pick(faces([0, 1]), 0.1).all()
    with pytest.raises(ValueError):
        ClassifySchedule(0)


def test_state_round_trip_picks_and_carries_the_same():
    frames = [[0, 1], [0, 1], [0, 1, 2], [0, 2], [0, 1, 2], [0, 1, 2]]
    whole = ClassifySchedule(3)
    masks, out, _ = run(whole, frames)
    first = ClassifySchedule(3)
    run(first, frames[:3])
    resumed = ClassifySchedule(3)
    resumed.load_state_dict(loads(dumps(first.state_dict())))  # as a checkpoint stores it
    masks2, out2, _ = run(resumed, frames[3:], first=3)
    assert [m.tolist() for m in masks[3:]] == [m.tolist() for m in masks2]
    assert not all(m.all() for m in masks2)  # some rows are carried across the checkpoint
    for a, b in zip(out[3:], out2):
        np.testing.assert_array_equal(a.probs, b.probs)


def test_video_rows_carry_their_tracks_last_classification():
    df = emobatch.run(SAMPLE / "astronaut_clip.mp4", device="cpu", classify_every=2)
    df = df.dropna(subset=["face"]).sort_values("frame")
    assert df["classified"].iloc[0] and not df["classified"].all() and df["classified"].mean() >= 0.5
    raw = df[RAW].to_numpy()
    for i in np.flatnonzero(~df["classified"].to_numpy(bool)):
        np.testing.assert_array_equal(raw[i], raw[i - 1])  # one astronaut, one track
    # where the classifier ran, it gave what an every-frame run gives on that frame
    full = emobatch.run(SAMPLE / "astronaut_clip.mp4", device="cpu", classify_every=1)
    full = full.dropna(subset=["face"]).set_index("frame")
    assert full["classified"].all()
    seen = df[df["classified"].astype(bool)].set_index("frame")
    np.testing.assert_allclose(seen[RAW].to_numpy(), full.loc[seen.index, RAW].to_numpy(),
                               atol=1e-6)
    stills = emobatch.run(SAMPLE / "astronaut.jpg", device="cpu", classify_every=3)
    assert stills.dropna(subset=["face"])["classified"].all()


def test_auto_classifies_every_other_frame_only_where_the_classifier_is_slow(monkeypatch):
    import emobatch.faces.device as device

    for isa, every in (("generic", 2), ("avx2", 2), ("avx512", 1), ("amx", 1)):
        monkeypatch.setattr(device, "cpu_isa", lambda isa=isa: isa)
        assert resolve_classify_every(Settings().video_classify_every()) == every
        assert resolve_classify_every(0, torch.device("cuda")) == 1
        assert resolve_classify_every(Settings(quality="fast").video_classify_every()) == 2
        assert resolve_classify_every(Settings(quality="exhaustive").video_classify_every()) == 1
        assert resolve_classify_every(Settings(classify_every=5).video_classify_every()) == 5
        assert resolve_classify_every(Settings(classify_every=5, track=False)
                                      .video_classify_every()) == 1


def test_auto_is_resolved_once_for_the_run_and_recorded(monkeypatch, tmp_path):
    """The run resolves auto before any work; its metadata, fingerprint and every worker use
    that value (a Dask worker on another CPU would otherwise pick its own)."""
    import emobatch.faces.device as device

    monkeypatch.setattr(device, "cpu_isa", lambda: "avx2")
    out = emobatch.run(SAMPLE / "astronaut_clip.mp4", out=tmp_path / "r.parquet", device="cpu")
    df = emobatch.read_timeline(out)
    meta = df.attrs["emobatch"]
    assert meta["classify_every"] == meta["settings"]["classify_every"] == 2
    assert not df.dropna(subset=["face"])["classified"].all()


def test_bf16_is_native_only_where_the_cpu_has_its_flags(monkeypatch):
    """oneDNN says bf16 is supported on any AVX-512 CPU, where it emulates it (a training
    epoch ~10x slower than fp32): AVX-512 without AVX512-BF16 or AMX runs fp32."""
    import emobatch.faces.device as device

    base = "fpu sse2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni"
    try:
        for flags, native in ((base, False), (base + " avx512_bf16", True),
                              (base + " amx_bf16 amx_tile avx512_bf16", True),
                              ("fpu sse2 avx avx2 fma", False)):
            monkeypatch.setattr(device, "_cpuinfo", lambda flags=flags: {"flags": flags})
            monkeypatch.setattr(device.platform, "machine", lambda: "x86_64")
            device.cpu_bf16_supported.cache_clear()
            assert device.cpu_bf16_supported() is native, flags
            assert device.amp_dtype(torch.device("cpu")) == (torch.bfloat16 if native else None)
    finally:
        monkeypatch.undo()
        device.cpu_bf16_supported.cache_clear()
