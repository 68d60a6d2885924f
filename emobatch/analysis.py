"""Analysis of a timeline DataFrame: coverage, per-source/per-track summaries, episodes.

Pure functions: a timeline (as written by `emobatch run`, read from Parquet or CSV) in, a
new DataFrame out; the input is never modified. Every function takes `raw=False` (the
smoothed probability columns) or `raw=True` (the per-frame `<emotion>_raw` columns); the
label of a face row is the argmax of the chosen columns.

Time: a video frame stands for the time until the next processed frame of its source (`dt`;
the last frame gets the source's median spacing), so shares and times on screen are right
for variable frame rates and `--every N`. Images (t_sec null) count one per face instead and
have no times. Rows may come in any order and a row repeated (same source, frame, face), as
after a resumed or distributed run: the functions sort and keep the last copy.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from .types import EMOTIONS

KEYS = ["source", "track"]
"""Group keys of a per-track table; track is <NA> for photos and untracked faces."""


def prob_columns(raw: bool = False, labels: tuple[str, ...] = EMOTIONS) -> list[str]:
    """The probability columns analysed: ['angry', ...] or ['angry_raw', ...]."""
    return [f"{e}_raw" for e in labels] if raw else list(labels)


def clean(df: pd.DataFrame) -> pd.DataFrame:
    """The timeline in source (first appearance), frame, face order, repeated rows dropped.

    Adds `kind` ('video' when the source has times, else 'image') and `dt` (seconds the row's
    frame stands for; NaN for images). face and track become nullable integers.
    """
    df = df.copy(deep=False)
    df.attrs = {}  # pandas deep-copies attrs (the run metadata) at every step otherwise
    order = {s: i for i, s in enumerate(pd.unique(df["source"]))}
    out = (df.assign(_order=df["source"].map(order), face=df["face"].astype("Int64"),
                     track=df["track"].astype("Int64"))
           .drop_duplicates(["source", "frame", "face"], keep="last")
           .sort_values(["_order", "frame", "face"], kind="stable", na_position="first"))
    frames = out.drop_duplicates(["source", "frame"])[["source", "frame", "t_sec"]]
    gap = frames.groupby("source", sort=False)["t_sec"].diff(-1).mul(-1)
    median = gap.groupby(frames["source"], sort=False).transform("median")
    frames = frames.assign(dt=gap.fillna(median).fillna(0.0).where(frames["t_sec"].notna()))
    out = out.merge(frames[["source", "frame", "dt"]], on=["source", "frame"], how="left")
    video = out["t_sec"].notna().groupby(out["source"], sort=False).transform("any")
    return out.assign(kind=np.where(video, "video", "image")).drop(columns="_order")


def _faces(df: pd.DataFrame, raw: bool) -> pd.DataFrame:
    """Face rows of a cleaned timeline with `label` (argmax of the chosen columns), `p`
    (its probability) and `w` (weight: dt for videos, 1 for images)."""
    faces = df[df["face"].notna()]
    probs = faces[prob_columns(raw)].to_numpy(np.float64)
    k = probs.argmax(1) if len(faces) else np.zeros(0, int)
    return faces.assign(label=np.asarray(EMOTIONS)[k], p=probs.max(1, initial=0.0),
                        w=faces["dt"].where(faces["kind"] == "video", 1.0))


def coverage(df: pd.DataFrame) -> pd.DataFrame:
    """One row per source: kind, frames (processed), frames_with_face, coverage (their
    share), duration_s (sum of the frames' dt; NaN for images), faces (face rows),
    max_faces (in one frame) and tracks (distinct track ids)."""
    return _coverage(clean(df))


def _coverage(d: pd.DataFrame) -> pd.DataFrame:
    """coverage() of a cleaned timeline."""
    per_frame = d.groupby(["source", "frame"], sort=False).agg(
        kind=("kind", "first"), dt=("dt", "first"), n=("face", "count"))
    g = per_frame.groupby("source", sort=False)
    out = g.agg(kind=("kind", "first"), frames=("n", "size"), faces=("n", "sum"),
                max_faces=("n", "max"))
    out.insert(2, "frames_with_face", per_frame["n"].gt(0).groupby("source", sort=False).sum())
    out.insert(3, "coverage", out["frames_with_face"] / out["frames"])
    out.insert(4, "duration_s", g["dt"].sum(min_count=1))
    out["tracks"] = d.groupby("source", sort=False)["track"].nunique()
    return out.reset_index()


_WEIGHTED = ["w", *[f"share_{e}" for e in EMOTIONS], *[f"mean_{e}" for e in EMOTIONS],
             "mean_confidence"]


def _weighted(faces: pd.DataFrame, raw: bool) -> pd.DataFrame:
    """faces with the _WEIGHTED columns: w, w * [label == e], w * p_e, w * p (to be summed)."""
    w = faces["w"].to_numpy(np.float64)[:, None]
    onehot = faces["label"].to_numpy()[:, None] == np.asarray(EMOTIONS)[None]
    values = np.column_stack([w, onehot * w, faces[prob_columns(raw)].to_numpy(np.float64) * w,
                              faces[["p"]].to_numpy(np.float64) * w])
    return faces.assign(**dict(zip(_WEIGHTED, values.T)))


def summarize(df: pd.DataFrame, by: str = "track", raw: bool = False) -> pd.DataFrame:
    """Emotion summary per source (by='source'), per source and track (by='track') or per
    person (by='person').

    Columns: source[, track], kind, frames (frames with the group's faces), faces (rows),
    then the group's time (NaN for images): by='track' time_s, the track's time on screen
    (sum of its rows' dt); by='source' face_seconds, the same summed over all its faces (two
    faces for 1 s make 2.0, so it can exceed the video) and duration_s, the source's
    processed length. Then first_s/last_s (first and last appearance), coverage (by='track':
    share of the source's frames the track is in; by='source': share of frames with at
    least one face), dominant (largest share), share_<e> (time-weighted share of faces
    labelled e), mean_<e> (time-weighted mean probability), mean_confidence (mean
    probability of the label), peak_<e>. Rows in order of first appearance. Photos and
    untracked faces (no track id: --no-track, or a face not yet confirmed as a track) get
    track <NA>: one group per source, whose time_s is face-seconds too. Sources without
    faces appear with by='source' only, with NaN statistics.

    by='person': person, sources (inputs the person is in), tracks (video tracks), frames,
    faces, time_s (seconds on screen in videos; NaN for a person seen only in photos), then
    dominant, share_<e>, mean_<e>, mean_confidence, peak_<e> as above (a photo face weighs
    one second). Faces without a person (untracked, photos of a run with --people off) are
    left out. ValueError for a timeline without the person column.
    """
    if by not in ("source", "track", "person"):
        raise ValueError(f"by must be 'source', 'track' or 'person', not {by!r}")
    d = clean(df)
    faces = _weighted(_faces(d, raw), raw)
    if by == "person":
        return _person_summary(_with_person(faces), raw)
    keys = ["source"] if by == "source" else KEYS
    g = faces.groupby(keys, sort=False, dropna=False)
    out = g.agg(kind=("kind", "first"), frames=("frame", "nunique"), faces=("face", "size"),
                time_s=("w", "sum"), first_s=("t_sec", "min"), last_s=("t_sec", "max"))
    out.loc[out["kind"] == "image", "time_s"] = np.nan
    out = out.join(_emotion_stats(g, raw)).reset_index()
    cov = _coverage(d)
    if by == "track":
        total = out["source"].map(cov.set_index("source")["frames"]).to_numpy(np.float64)
        out.insert(out.columns.get_loc("last_s") + 1, "coverage", out["frames"] / total)
        return out
    out = cov[["source", "kind", "coverage", "duration_s"]].merge(
        out.drop(columns="kind").rename(columns={"time_s": "face_seconds"}), on="source",
        how="left")
    out[["frames", "faces"]] = out[["frames", "faces"]].fillna(0).astype(int)
    out.insert(out.columns.get_loc("face_seconds") + 1, "duration_s", out.pop("duration_s"))
    return out


def _emotion_stats(g, raw: bool) -> pd.DataFrame:
    """dominant, share_<e>, mean_<e>, mean_confidence, peak_<e> of each group of
    _weighted faces."""
    sums = g[_WEIGHTED].sum()
    stats = sums.drop(columns="w").div(sums["w"].where(sums["w"] > 0), axis=0)
    stats[[f"peak_{e}" for e in EMOTIONS]] = g[prob_columns(raw)].max().to_numpy()
    shares = stats[[f"share_{e}" for e in EMOTIONS]].fillna(-1).to_numpy()
    stats.insert(0, "dominant", np.asarray(EMOTIONS)[shares.argmax(1)])
    return stats


def _with_person(faces: pd.DataFrame) -> pd.DataFrame:
    """The face rows that have a person; ValueError for a timeline without persons."""
    if "person" not in faces.columns:
        raise ValueError("the timeline has no person column (written before person ids)")
    return faces[faces["person"].notna()]


def _person_summary(faces: pd.DataFrame, raw: bool) -> pd.DataFrame:
    """summarize(by='person') of the _weighted faces that have a person."""
    g = faces.groupby("person", sort=False)
    video = faces["kind"] == "video"
    tracks = faces[video & faces["track"].notna()].drop_duplicates(["person", "source", "track"])
    out = g.agg(sources=("source", "nunique"), faces=("face", "size"))
    out.insert(1, "tracks", tracks.groupby("person", sort=False).size()
               .reindex(out.index, fill_value=0))
    out.insert(2, "frames", faces.drop_duplicates(["person", "source", "frame"])
               .groupby("person", sort=False).size())
    out["time_s"] = faces["w"].where(video).groupby(faces["person"], sort=False).sum(min_count=1)
    return out.join(_emotion_stats(g, raw)).reset_index()


def _hysteresis(probs: np.ndarray, margin: float) -> np.ndarray:
    """Per-row state (class index): starts at the first row's argmax and moves to another
    class only when that class's probability exceeds the current one's by >= margin."""
    top = probs.argmax(1)
    state = np.empty(len(probs), int)
    cur = int(top[0])
    for i, (k, row) in enumerate(zip(top.tolist(), probs.tolist())):
        if k != cur and row[k] - row[cur] >= margin:
            cur = k
        state[i] = cur
    return state


def _runs(state: np.ndarray, t: np.ndarray, dt: np.ndarray, max_gap: float
          ) -> list[list[int]]:
    """[start, end (exclusive), segment] of each run of one state; a gap longer than max_gap
    between rows (the face off screen) starts a new segment."""
    gap = t[1:] - (t[:-1] + dt[:-1]) > max_gap
    segment = np.concatenate([[0], np.cumsum(gap)])
    cut = np.flatnonzero((state[1:] != state[:-1]) | gap) + 1
    bounds = np.concatenate([[0], cut, [len(state)]])
    return [[a, b, int(segment[a])] for a, b in zip(bounds[:-1], bounds[1:])]


def _absorb_short(runs: list[list[int]], state: np.ndarray, t: np.ndarray, dt: np.ndarray,
                  min_duration: float) -> np.ndarray:
    """State with each run shorter than min_duration relabelled: to the preceding run's
    state in its segment, or the first long run's when it comes first (a segment without a
    long run takes the state of its longest run)."""
    state = state.copy()
    for _, seg in itertools.groupby(runs, key=lambda r: r[2]):
        seg = list(seg)
        length = [t[b - 1] + dt[b - 1] - t[a] for a, b, _ in seg]
        long = [r for r, n in zip(seg, length) if n >= min_duration]
        fill = state[(long[0] if long else seg[int(np.argmax(length))])[0]]
        for (a, b, _), n in zip(seg, length):
            if n >= min_duration:
                fill = state[a]
            else:
                state[a:b] = fill
    return state


def _track_episodes(g: pd.DataFrame, cols: list[str], margin: float, min_duration: float,
                    max_gap: float) -> list[dict]:
    """Episodes of one track's rows (sorted by time)."""
    probs = g[cols].to_numpy(np.float64)
    t, dt = g["t_sec"].to_numpy(np.float64), g["dt"].to_numpy(np.float64)
    frame = g["frame"].to_numpy()
    state = _hysteresis(probs, margin)
    state = _absorb_short(_runs(state, t, dt, max_gap), state, t, dt, min_duration)
    rows = []
    for a, b, _ in _runs(state, t, dt, max_gap):
        if t[b - 1] + dt[b - 1] - t[a] < min_duration:
            continue  # the face was seen for less than min_duration: no emotion held that long
        p = probs[a:b, state[a]]
        peak = a + int(p.argmax())
        rows.append({"emotion": EMOTIONS[state[a]], "onset_s": t[a],
                     "offset_s": t[b - 1] + dt[b - 1],
                     "peak_s": t[peak], "peak_prob": p.max(), "mean_prob": p.mean(),
                     "frames": b - a, "onset_frame": frame[a], "offset_frame": frame[b - 1]})
    return rows


EPISODE_COLUMNS = ["source", "track", "emotion", "onset_s", "offset_s", "duration_s", "peak_s",
                   "peak_prob", "mean_prob", "frames", "onset_frame", "offset_frame"]


def episodes(df: pd.DataFrame, raw: bool = False, min_duration: float = 0.5,
             margin: float = 0.1, max_gap: float = 1.0, by: str = "track") -> pd.DataFrame:
    """Contiguous spans where one emotion holds for a face in a video, one row each.

    Per track (untracked faces: per face index within the frame, an approximation), rows in
    time order; by='person': per person and video, across the person's tracks (a person
    has at most one face a frame), in a `person` column instead of `track`, faces without a
    person left out (ValueError for a timeline without the person column). Hysteresis: the emotion changes only when another one's probability beats
    the current one's by `margin`. Then spans shorter than `min_duration` seconds are merged
    into the preceding span (the following one at the start). The face missing for more
    than `max_gap` seconds ends a span; an appearance shorter than `min_duration` as a whole
    gives none, so no episode is ever shorter than `min_duration`. Columns (EPISODE_COLUMNS): onset_s (first frame's
    time), offset_s (last frame's time + its dt), duration_s, peak_s and peak_prob (the
    emotion's highest probability in the span and when), mean_prob, frames, onset_frame,
    offset_frame. Photos have no episodes.
    """
    if by not in ("track", "person"):
        raise ValueError(f"by must be 'track' or 'person', not {by!r}")
    faces = _faces(clean(df), raw)
    faces = faces[faces["kind"] == "video"]
    if by == "person":
        faces = _with_person(faces)
        who = faces["person"]
    else:  # untracked: face k -> -1-k, never a track id
        who = faces["track"].fillna(-1 - faces["face"])
    rows = []
    for (source, w), g in faces.groupby([faces["source"], who], sort=False):
        for r in _track_episodes(g, prob_columns(raw), margin, min_duration, max_gap):
            rows.append({"source": source, by: w if by == "person" or w >= 0 else pd.NA, **r})
    columns = [by if c == "track" else c for c in EPISODE_COLUMNS]
    out = pd.DataFrame(rows, columns=[c for c in columns if c != "duration_s"])
    out.insert(5, "duration_s", out["offset_s"] - out["onset_s"])
    return out.astype({"track": "Int64"} if by == "track" else {"person": "string"})


def resample(df: pd.DataFrame, bins: int = 400, raw: bool = False) -> pd.DataFrame:
    """Video probabilities averaged (weighted by dt) in `bins` equal time bins per source
    (fewer for a clip of fewer frames: a bin is never shorter than the median frame
    spacing), per track: for plotting an hour as a few hundred points.

    Columns: source, track, t0, t1 (bin start and end, seconds), frames (rows in the bin),
    then the 7 probability columns (the smoothed or raw ones, named without `_raw`). Bins
    where a track has no rows are absent.
    """
    faces = _faces(clean(df), raw)
    faces = faces[faces["kind"] == "video"]
    src = faces["source"]
    end = (faces["t_sec"] + faces["dt"]).groupby(src, sort=False).transform("max")
    frame_dt = faces["dt"].groupby(src, sort=False).transform("median")
    # never narrower than a frame: a short clip gets a bin per frame, not empty bins between
    width = np.maximum(end / bins, frame_dt).where(end > 0, 1.0)
    b = np.minimum(np.floor(faces["t_sec"] / width + 1e-6).astype(int), bins - 1)
    cols = prob_columns(raw)
    w = faces["w"].clip(lower=1e-9)
    wp = faces[cols].mul(w, axis=0).set_axis(list(EMOTIONS), axis=1)
    keys = [src, faces["track"], b.rename("bin")]
    sums = wp.assign(_w=w).groupby(keys, sort=False, dropna=False).sum()
    out = sums[list(EMOTIONS)].div(sums["_w"], axis=0)
    out.insert(0, "frames", faces.groupby(keys, sort=False, dropna=False).size())
    out = out.reset_index()
    bw = out["source"].map(width.groupby(src, sort=False).first())
    out.insert(2, "t0", out.pop("bin") * bw)
    out.insert(3, "t1", out["t0"] + bw)
    return out.sort_values(["source", "track", "t0"], kind="stable").reset_index(drop=True)


def best_faces(df: pd.DataFrame, raw: bool = False) -> pd.DataFrame:
    """The row to show for each track of a video (largest box x det_score^8, so a big but
    doubtful detection loses to a clear one) and every face row of a photo: for
    thumbnails. Columns of the cleaned timeline, plus label and p (its probability)."""
    faces = _faces(clean(df), raw)
    score = ((faces["x2"] - faces["x1"]) * (faces["y2"] - faces["y1"])
             * faces["det_score"].astype(np.float64) ** 8)
    video = faces["kind"] == "video"
    pick = score[video].groupby([faces["source"], faces["track"]], sort=False,
                                dropna=False).idxmax()
    return pd.concat([faces.loc[pick.to_numpy()], faces[~video]]).reset_index(drop=True)
