"""Tests for emobatch.analysis: synthetic timelines with known answers, then a real run."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import emobatch
from emobatch.analysis import (EPISODE_COLUMNS, best_faces, coverage, episodes, resample,
                               summarize)
from emobatch.types import EMOTIONS
from shared_run import real_run


def _probs(emotion: str, p: float = 0.8) -> dict[str, float]:
    """Probabilities with `emotion` at p and the rest spread evenly."""
    rest = (1 - p) / (len(EMOTIONS) - 1)
    return {e: (p if e == emotion else rest) for e in EMOTIONS}


def _row(source: str, frame: int, t: float | None, face: int | None = None,
         track: int | None = None, probs: dict[str, float] | None = None,
         raw: dict[str, float] | None = None) -> dict:
    """One timeline row; face None: a frame without faces (face fields null)."""
    row = {"source": source, "frame": frame, "t_sec": t, "face": face, "track": track,
           "x1": None, "y1": None, "x2": None, "y2": None, "det_score": None}
    if face is not None:
        row.update(x1=10.0 * face, y1=0.0, x2=10.0 * face + 8, y2=8.0, det_score=0.99)
    probs = probs or {}
    raw = raw or probs
    row.update({e: probs.get(e) for e in EMOTIONS})
    row["emotion"] = max(probs, key=probs.get) if probs else None
    row["confidence"] = max(probs.values()) if probs else None
    row.update({f"{e}_raw": raw.get(e) for e in EMOTIONS})
    return row


def _timeline(rows: list[dict]) -> pd.DataFrame:
    """As read from Parquet: nullable ints come out as floats."""
    return pd.DataFrame(rows).astype({"face": float, "track": float, "t_sec": float})


def _track_video(labels: list[str], fps: float = 25.0, source: str = "v.mp4",
                 track: int | None = 0) -> list[dict]:
    """A video with one face whose emotion is labels[i] at frame i (p 0.8)."""
    return [_row(source, i, i / fps, 0, track, _probs(e)) for i, e in enumerate(labels)]


@pytest.fixture
def two_faces() -> pd.DataFrame:
    """10 fps, 20 frames: no face in frames 0-4; track 0 in 5-19 (happy 5-13, sad 14-19);
    track 1 in 10-19 (surprise)."""
    rows = []
    for i in range(20):
        t = i / 10
        if i < 5:
            rows.append(_row("v.mp4", i, t))
            continue
        rows.append(_row("v.mp4", i, t, 0, 0, _probs("happy" if i < 14 else "sad", 0.7)))
        if i >= 10:
            rows.append(_row("v.mp4", i, t, 1, 1, _probs("surprise", 0.9 if i == 12 else 0.6)))
    return _timeline(rows)


# --------------------------------------------------------------------------- coverage & summary


def test_coverage_counts_frames_without_faces(two_faces: pd.DataFrame) -> None:
    c = coverage(two_faces).iloc[0]
    assert (c["kind"], c["frames"], c["frames_with_face"]) == ("video", 20, 15)
    assert c["coverage"] == pytest.approx(0.75)
    assert c["duration_s"] == pytest.approx(2.0)
    assert (c["faces"], c["max_faces"], c["tracks"]) == (25, 2, 2)


def test_summarize_per_track_known_shares_and_times(two_faces: pd.DataFrame) -> None:
    s = summarize(two_faces).set_index("track")
    t0, t1 = s.loc[0], s.loc[1]
    assert (t0["frames"], t1["frames"]) == (15, 10)
    assert t0["time_s"] == pytest.approx(1.5) and t1["time_s"] == pytest.approx(1.0)
    assert (t0["first_s"], t0["last_s"]) == pytest.approx((0.5, 1.9))
    assert t0["coverage"] == pytest.approx(0.75) and t1["coverage"] == pytest.approx(0.5)
    assert t0["share_happy"] == pytest.approx(0.6) and t0["share_sad"] == pytest.approx(0.4)
    assert t0["dominant"] == "happy" and t1["dominant"] == "surprise"
    assert t0["mean_happy"] == pytest.approx((9 * 0.7 + 6 * 0.05) / 15)
    assert t1["peak_surprise"] == pytest.approx(0.9)
    assert t1["mean_confidence"] == pytest.approx((9 * 0.6 + 0.9) / 10)
    shares = s[[f"share_{e}" for e in EMOTIONS]].sum(axis=1)
    assert np.allclose(shares, 1.0)


def test_summarize_per_source_pools_tracks(two_faces: pd.DataFrame) -> None:
    s = summarize(two_faces, by="source").iloc[0]
    assert s["coverage"] == pytest.approx(0.75)
    # face-seconds (1.5 + 1.0) exceed the 2 s video: named so, the duration beside them
    assert s["face_seconds"] == pytest.approx(2.5) and s["duration_s"] == pytest.approx(2.0)
    assert "time_s" not in s.index
    assert s["share_surprise"] == pytest.approx(0.4)
    assert s["share_happy"] == pytest.approx(0.9 / 2.5)
    with pytest.raises(ValueError):
        summarize(two_faces, by="face")


def test_shares_are_time_weighted_for_variable_frame_rates() -> None:
    # frames at 0, 0.1, 0.3, 0.4 s: dt 0.1, 0.2, 0.1 and the median 0.1 for the last
    times, labels = [0.0, 0.1, 0.3, 0.4], ["happy", "sad", "sad", "happy"]
    df = _timeline([_row("v.mp4", i, t, 0, 0, _probs(e)) for i, (t, e) in
                    enumerate(zip(times, labels))])
    s = summarize(df).iloc[0]
    assert s["time_s"] == pytest.approx(0.5)
    assert s["share_sad"] == pytest.approx(0.6)  # a plain row count would say 0.5


def test_every_nth_frame_stands_for_the_frames_between() -> None:
    df = _timeline([_row("v.mp4", i, i / 30, 0, 0, _probs("fear")) for i in range(0, 90, 3)])
    assert coverage(df).iloc[0]["duration_s"] == pytest.approx(3.0)
    assert summarize(df).iloc[0]["time_s"] == pytest.approx(3.0)


def test_raw_columns_are_analysed_separately() -> None:
    rows = [_row("v.mp4", i, i / 10, 0, 0, _probs("neutral"),
                 raw=_probs("angry" if i % 2 else "neutral")) for i in range(10)]
    df = _timeline(rows)
    assert summarize(df).iloc[0]["share_neutral"] == pytest.approx(1.0)
    raw = summarize(df, raw=True).iloc[0]
    assert raw["share_angry"] == pytest.approx(0.5) and raw["peak_angry"] == pytest.approx(0.8)


def test_photos_have_no_tracks_or_times() -> None:
    rows = [_row("a.jpg", 0, None, k, None, _probs(e)) for k, e in
            enumerate(["happy", "happy", "sad"])] + [_row("b.png", 0, None)]
    df = _timeline(rows)
    c = coverage(df).set_index("source")
    assert list(c["coverage"]) == [1.0, 0.0] and c["duration_s"].isna().all()
    s = summarize(df)
    assert len(s) == 1 and pd.isna(s.iloc[0]["track"]) and pd.isna(s.iloc[0]["time_s"])
    assert s.iloc[0]["faces"] == 3 and s.iloc[0]["share_happy"] == pytest.approx(2 / 3)
    by_source = summarize(df, by="source").set_index("source")
    assert by_source.loc["b.png", "faces"] == 0 and pd.isna(by_source.loc["b.png", "dominant"])
    assert episodes(df).empty and list(episodes(df).columns) == EPISODE_COLUMNS
    assert resample(df).empty
    assert len(best_faces(df)) == 3


def test_resumed_or_distributed_output_gives_the_same_answers(two_faces: pd.DataFrame) -> None:
    photo = _timeline([_row("a.jpg", 0, None, 0, None, _probs("sad"))])
    df = pd.concat([two_faces, photo], ignore_index=True)
    # parts concatenated in another order, with the rows at a part's edge written twice
    messy = pd.concat([df.iloc[30:], df.iloc[:33]], ignore_index=True).sample(frac=1,
                                                                                random_state=0)

    def by_source(out: pd.DataFrame) -> pd.DataFrame:
        return out.sort_values("source", kind="stable").reset_index(drop=True)

    for fn in (coverage, summarize, episodes):
        pd.testing.assert_frame_equal(by_source(fn(messy)), by_source(fn(df)))


def test_csv_and_parquet_timelines_agree(two_faces: pd.DataFrame, tmp_path) -> None:
    two_faces.to_csv(tmp_path / "t.csv", index=False)
    two_faces.to_parquet(tmp_path / "t.parquet")
    a, b = (emobatch.read_timeline(tmp_path / n) for n in ("t.csv", "t.parquet"))
    pd.testing.assert_frame_equal(summarize(a), summarize(b), check_dtype=False)
    pd.testing.assert_frame_equal(episodes(a), episodes(b), check_dtype=False)


# --------------------------------------------------------------------------- episodes


def _flicker_track() -> pd.DataFrame:
    """25 fps: happy 0-49 (peak 0.95 at frame 30), sad 50-51 (a flicker), happy 52-99,
    sad 100-199."""
    labels = ["happy"] * 50 + ["sad"] * 2 + ["happy"] * 48 + ["sad"] * 100
    rows = _track_video(labels)
    rows[30].update(_probs("happy", 0.95))
    return _timeline(rows)


def test_episodes_merge_flickers_shorter_than_min_duration() -> None:
    ep = episodes(_flicker_track(), min_duration=0.5)
    assert list(ep["emotion"]) == ["happy", "sad"]
    assert list(ep["onset_s"]) == pytest.approx([0.0, 4.0])
    assert list(ep["offset_s"]) == pytest.approx([4.0, 8.0])
    assert list(ep["duration_s"]) == pytest.approx([4.0, 4.0])
    assert list(ep["onset_frame"]) == [0, 100] and list(ep["offset_frame"]) == [99, 199]
    assert list(ep["frames"]) == [100, 100]
    assert ep.iloc[0]["peak_s"] == pytest.approx(1.2)
    assert ep.iloc[0]["peak_prob"] == pytest.approx(0.95)
    assert ep.iloc[1]["peak_prob"] == pytest.approx(0.8)


def test_episodes_without_min_duration_keep_every_run() -> None:
    ep = episodes(_flicker_track(), min_duration=0, margin=0)
    assert list(ep["emotion"]) == ["happy", "sad", "happy", "sad"]
    assert list(ep["onset_s"]) == pytest.approx([0.0, 2.0, 2.08, 4.0])


def test_episodes_hysteresis_ignores_small_margins() -> None:
    close = {**_probs("happy", 0.45), "sad": 0.49}  # sad on top, by 0.04
    rows = _track_video(["happy"] * 50 + ["sad"] * 50)
    for r in rows[20:30]:
        r.update(close)
    df = _timeline(rows)
    assert list(episodes(df, min_duration=0, margin=0.1)["emotion"]) == ["happy", "sad"]
    ep = episodes(df, min_duration=0, margin=0.0)
    assert list(ep["emotion"]) == ["happy", "sad", "happy", "sad"]
    assert list(ep["onset_frame"]) == [0, 20, 30, 50]


def test_episodes_split_where_the_face_is_away() -> None:
    rows = [r if not 50 <= r["frame"] < 100 else _row("v.mp4", r["frame"], r["t_sec"])
            for r in _track_video(["happy"] * 150, fps=25)]
    ep = episodes(_timeline(rows), max_gap=1.0)
    assert list(ep["emotion"]) == ["happy", "happy"]
    assert list(ep["onset_s"]) == pytest.approx([0.0, 4.0])
    assert list(ep["offset_s"]) == pytest.approx([2.0, 6.0])


def test_episodes_short_first_run_joins_the_following_one() -> None:
    ep = episodes(_timeline(_track_video(["sad"] * 5 + ["happy"] * 45)), min_duration=0.5)
    assert list(ep["emotion"]) == ["happy"] and ep.iloc[0]["onset_s"] == 0.0


def test_episodes_per_track_and_for_untracked_faces(two_faces: pd.DataFrame) -> None:
    ep = episodes(two_faces, min_duration=0.3)
    assert list(zip(ep["track"], ep["emotion"])) == [(0, "happy"), (0, "sad"), (1, "surprise")]
    assert list(ep["onset_s"]) == pytest.approx([0.5, 1.4, 1.0])
    untracked = episodes(two_faces.assign(track=np.nan), min_duration=0.3)
    assert untracked["track"].isna().all() and list(untracked["emotion"]) == list(ep["emotion"])


def test_episodes_on_raw_columns() -> None:
    rows = [_row("v.mp4", i, i / 10, 0, 0, _probs("neutral"),
                 raw=_probs("angry" if i >= 10 else "neutral")) for i in range(20)]
    df = _timeline(rows)
    assert list(episodes(df)["emotion"]) == ["neutral"]
    ep = episodes(df, raw=True)
    assert list(ep["emotion"]) == ["neutral", "angry"]
    assert ep.iloc[1]["onset_s"] == pytest.approx(1.0)


def _people_timeline() -> pd.DataFrame:
    """10 fps: in v.mp4 p1 is track 0 (frames 0-9, happy) then, after another walker
    passed, track 2 (frames 13-19, happy); p2 is track 1 (frames 0-19, sad); untracked
    face 2 in frame 5 has no person; p1 again in a photo (surprise)."""
    rows = []
    for i in range(20):
        if i < 10 or i >= 13:
            rows.append(_row("v.mp4", i, i / 10, 0, 0 if i < 10 else 2, _probs("happy")) | {
                "person": "p1"})
        rows.append(_row("v.mp4", i, i / 10, 1, 1, _probs("sad")) | {"person": "p2"})
    rows.append(_row("v.mp4", 5, 0.5, 2, None, _probs("angry")) | {"person": None})
    rows.append(_row("a.jpg", 0, None, 0, None, _probs("surprise")) | {"person": "p1"})
    return _timeline(rows).astype({"person": "string"})


def test_summarize_per_person_pools_tracks_and_inputs() -> None:
    s = summarize(_people_timeline(), by="person").set_index("person")
    assert list(s.index) == ["p1", "p2"]  # the untracked face has no person: left out
    p1, p2 = s.loc["p1"], s.loc["p2"]
    assert (p1["sources"], p1["tracks"], p1["frames"], p1["faces"]) == (2, 2, 18, 18)
    assert p1["time_s"] == pytest.approx(1.7) and p1["dominant"] == "happy"
    assert p1["share_surprise"] == pytest.approx(1 / 2.7)  # the photo face weighs 1 s
    assert (p2["sources"], p2["tracks"], p2["frames"]) == (1, 1, 20)
    assert p2["time_s"] == pytest.approx(2.0) and p2["share_sad"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="person"):
        summarize(_people_timeline().drop(columns="person"), by="person")


def test_episodes_per_person_span_the_persons_tracks() -> None:
    df = _people_timeline()
    by_track = episodes(df, min_duration=0.3)
    assert list(by_track["track"]) == [0, 1, 2]
    ep = episodes(df, min_duration=0.3, by="person")
    assert list(ep.columns) == ["person" if c == "track" else c for c in EPISODE_COLUMNS]
    assert list(zip(ep["person"], ep["emotion"])) == [("p1", "happy"), ("p2", "sad")]
    # the 0.3 s p1 was hidden is shorter than max_gap: one episode over both tracks
    assert list(ep["onset_s"]) == pytest.approx([0.0, 0.0])
    assert list(ep["offset_s"]) == pytest.approx([2.0, 2.0])
    assert ep["person"].dtype == "string"
    apart = episodes(df, min_duration=0.3, max_gap=0.1, by="person")
    assert list(apart["person"]) == ["p1", "p1", "p2"]
    with pytest.raises(ValueError, match="by must be"):
        episodes(df, by="face")


# --------------------------------------------------------------------------- resample & best faces


def test_resample_means_per_bin() -> None:
    labels = ["happy"] * 60 + ["sad"] * 40
    r = resample(_timeline(_track_video(labels, fps=10)), bins=4)
    assert list(r["t0"]) == pytest.approx([0, 2.5, 5, 7.5])
    assert list(r["frames"]) == [25, 25, 25, 25]
    assert list(r["happy"]) == pytest.approx([0.8, 0.8, (10 * 0.8 + 15 * 0.2 / 6) / 25, 0.2 / 6])


def test_best_faces_one_per_track_largest_confident_box(two_faces: pd.DataFrame) -> None:
    df = two_faces.copy()
    df.loc[(df["frame"] == 7) & (df["track"] == 0), ["x2", "y2"]] = [30.0, 30.0]
    df.loc[(df["frame"] == 8) & (df["track"] == 0), ["x2", "y2", "det_score"]] = [60.0, 60.0, 0.5]
    best = best_faces(df)
    assert list(best["track"]) == [0, 1] and best.iloc[0]["frame"] == 7


# --------------------------------------------------------------------------- a real run


def test_real_run_of_the_shared_media(tmp_path_factory: pytest.TempPathFactory) -> None:
    df = emobatch.read_timeline(real_run(tmp_path_factory))
    c = coverage(df).set_index("source")
    video = next(s for s in c.index if s.endswith("pyfeat_face_noface.mov"))
    # the face leaves at ~2.4 s of 6.4 s; every 2nd frame processed, so ~85 of 169 frames
    assert c.loc[video, "frames"] == 85 and 0.3 < c.loc[video, "coverage"] < 0.55
    assert c.loc[video, "duration_s"] == pytest.approx(6.4, abs=0.1)
    assert sorted(c.loc[c["kind"] == "image", "faces"]) == [0, 5]
    s = summarize(df)
    vid = s[s["source"] == video]
    assert len(vid) == 1 and vid.iloc[0]["time_s"] == pytest.approx(2.4, abs=0.2)
    faces = df[(df["source"] == video) & df["face"].notna()]
    assert vid.iloc[0]["dominant"] == faces["emotion"].value_counts().idxmax()
    ep = episodes(df)
    assert set(ep["source"]) == {video}
    # episodes tile the track's time: contiguous, inside its appearance, total = time on screen
    assert np.allclose(ep["onset_s"].iloc[1:].to_numpy(), ep["offset_s"].iloc[:-1].to_numpy())
    assert ep["duration_s"].sum() == pytest.approx(vid.iloc[0]["time_s"])
    assert (ep["peak_prob"] >= ep["mean_prob"]).all()
    for raw in (False, True):
        shares = summarize(df, raw=raw)[[f"share_{e}" for e in EMOTIONS]].sum(axis=1)
        assert np.allclose(shares, 1.0)


def test_no_episode_is_shorter_than_min_duration() -> None:
    # 25 fps, 4 s: track 0 happy throughout; an untracked face (no track id) flickers in for
    # single frames more than max_gap apart, and track 1 is seen for 0.2 s only
    rows = _track_video(["happy"] * 100)
    rows += [_row("v.mp4", i, i / 25, 1, None, _probs("sad")) for i in (5, 45, 85)]
    rows += [_row("v.mp4", i, i / 25, 2, 1, _probs("fear")) for i in range(50, 55)]
    df = _timeline(rows)
    for min_duration in (0.5, 0.1):
        ep = episodes(df, min_duration=min_duration)
        assert (ep["duration_s"] >= min_duration - 1e-9).all(), ep
        assert list(zip(ep["track"], ep["emotion"])) == [(0, "happy")] + (
            [(1, "fear")] if min_duration <= 0.2 else [])
    # a face seen long enough without a track still has its episodes (per face index)
    ep = episodes(_timeline(_track_video(["sad"] * 50, track=None)), min_duration=0.5)
    assert len(ep) == 1 and pd.isna(ep.iloc[0]["track"]) and ep.iloc[0]["duration_s"] == 2.0


def test_an_empty_timeline_gives_empty_tables(tmp_path) -> None:
    from emobatch.batch.sinks import TimelineSink

    with TimelineSink(tmp_path / "r.parquet") as sink:  # every input failed: no rows
        sink.add_error("bad.mp4", "zero-byte file")
    df = emobatch.read_timeline(tmp_path / "r.parquet")
    assert len(df) == 0
    assert coverage(df).empty and summarize(df, by="source").empty
    tracks = summarize(df)
    assert tracks.empty and {"track", "time_s", "coverage", "dominant"} <= set(tracks.columns)
    assert list(episodes(df).columns) == EPISODE_COLUMNS and episodes(df).empty
    assert resample(df).empty and best_faces(df).empty
