"""What the HTML report shows, computed once from a timeline by `emobatch.analysis`, and which
video tracks and photo faces get a plot or a thumbnail."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .. import analysis

PLOT_BINS = 400          # points per track plot: an hour reads as well as a minute
MAX_PLOTTED_TRACKS = 12  # per video, the longest on screen; the others are in the tables
MAX_PHOTO_FACES = 400    # gallery and table
MAX_PEOPLE = 400         # rows (and thumbnails) of the people table


@dataclass
class ReportData:
    """What the report shows, all from emobatch.analysis."""

    meta: dict[str, Any]
    sources: pd.DataFrame    # summarize(by="source") with coverage's columns
    tracks: pd.DataFrame     # summarize(by="track")
    episodes: pd.DataFrame
    series: pd.DataFrame     # resample(bins=PLOT_BINS)
    faces: pd.DataFrame      # best_faces: a row per video track, every photo face
    raw: bool = False
    # summarize(by="person"); empty for a timeline without persons (--people off, older runs)
    people: pd.DataFrame = field(default_factory=pd.DataFrame)


_NUMERIC = ("frame", "t_sec", "face", "track", "x1", "y1", "x2", "y2", "det_score")


def check_timeline(df: pd.DataFrame, name: str) -> None:
    """UsageError unless `df` holds what the report reads with the types it reads them as:
    `source` text on every row, the numeric columns and emotion probabilities numbers (or
    all null), the run metadata (df.attrs['emobatch']) a JSON object if present."""
    from ..errors import UsageError
    from ..types import EMOTIONS

    meta = df.attrs.get("emobatch")
    if meta is not None and not isinstance(meta, dict):
        raise UsageError(f"{name}: its run metadata is a {type(meta).__name__}, not an object")
    source = df["source"]
    if source.isna().any() or not source.map(lambda s: isinstance(s, str)).all():
        raise UsageError(f"{name}: the source column must be text on every row")
    wrong = [c for c in (*_NUMERIC, *EMOTIONS) if c in df.columns and not (
        pd.api.types.is_numeric_dtype(df[c]) or df[c].isna().all())]
    if wrong:
        raise UsageError(f"{name}: not numbers in the {', '.join(wrong)} column(s) "
                         f"(e.g. {df[wrong[0]].dropna().iloc[0]!r})")


def analyse(df: pd.DataFrame, raw: bool = False, min_episode: float = 0.5) -> ReportData:
    """Run the analysis functions the report shows on a timeline."""
    cov = analysis.coverage(df)
    sources = analysis.summarize(df, by="source", raw=raw).merge(
        cov[["source", "frames", "frames_with_face", "max_faces", "tracks"]]
        .rename(columns={"frames": "frames_total"}), on="source")
    people = ("person" in df.columns and df["person"].notna().any())
    return ReportData(meta=dict(df.attrs.get("emobatch") or {}), sources=sources,
                      tracks=_with_persons(analysis.summarize(df, raw=raw), df),
                      episodes=analysis.episodes(df, raw=raw, min_duration=min_episode),
                      series=analysis.resample(df, bins=PLOT_BINS, raw=raw),
                      faces=analysis.best_faces(df, raw=raw), raw=raw,
                      people=analysis.summarize(df, by="person", raw=raw) if people
                      else pd.DataFrame(columns=["person"]))


def _with_persons(tracks: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """summarize(by='track') with each track's `person` (<NA>: none, or no person column)."""
    if "person" not in df.columns:
        return tracks.assign(person=pd.Series(pd.NA, tracks.index, "string"))
    persons = (df.loc[df["person"].notna() & df["track"].notna(), ["source", "track", "person"]]
               .drop_duplicates(["source", "track"]).astype({"track": "Int64"}))
    return tracks.merge(persons, on=["source", "track"], how="left")


def grouped_by_person(tracks: pd.DataFrame) -> pd.DataFrame:
    """Tracks with a person first, grouped by person in order of the persons' first
    appearance (each group in order of first appearance), then those without one."""
    first = {p: i for i, p in enumerate(pd.unique(tracks["person"].dropna()))}
    order = tracks["person"].map(first).fillna(len(first))
    return tracks.iloc[order.to_numpy(np.float64).argsort(kind="stable")]


def person_faces(faces: pd.DataFrame) -> pd.DataFrame:
    """The face to show for each person (best_faces rows: the largest confident one of the
    person's tracks and photo faces), in order of first appearance."""
    if "person" not in faces.columns:
        return faces.iloc[:0].assign(person=pd.Series(dtype="string"))
    f = faces[faces["person"].notna()]
    score = (f["x2"] - f["x1"]) * (f["y2"] - f["y1"]) * f["det_score"].astype(np.float64) ** 8
    return f.loc[score.groupby(f["person"], sort=False).idxmax().to_numpy()]


def video_tracks(tracks: pd.DataFrame) -> pd.DataFrame:
    """The rows of summarize(by='track') that are tracks of a video (not its untracked
    faces, not photos), in order of first appearance."""
    return tracks[(tracks["kind"] == "video") & tracks["track"].notna()]


def untracked(tracks: pd.DataFrame) -> pd.DataFrame:
    """The rows of summarize(by='track') pooling each video's untracked faces."""
    return tracks[(tracks["kind"] == "video") & tracks["track"].isna()]


def plotted_tracks(tracks: pd.DataFrame) -> pd.DataFrame:
    """The video tracks that get a plot: the MAX_PLOTTED_TRACKS longest on screen per video,
    shown in order of first appearance like every table."""
    video = video_tracks(tracks)
    return (video.sort_values("time_s", ascending=False, kind="stable")
            .groupby("source", sort=False).head(MAX_PLOTTED_TRACKS).sort_index())


def thumb_key(row: pd.Series) -> tuple[str, str]:
    """(source, 't<track>' for a video track or 'f<face>' for a photo face)."""
    if row["kind"] == "video":
        return row["source"], f"t{'' if pd.isna(row['track']) else int(row['track'])}"
    return row["source"], f"f{int(row['face'])}"
