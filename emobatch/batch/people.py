"""Person ids, made when the timeline is published: each input's track (and photo face)
embeddings from its store, clustered (emobatch.faces.identity.cluster) within each input or
across all, with two faces seen in one frame never one person; named from the gallery;
numbered in input order, then order of first appearance. Only the stores are read, so a
resumed, multi-process or Dask run gives the ids a plain run gives.

A row's unit is its track; an untracked photo face is a unit of its own, keyed
-1 - (frame << 20 | face). Video faces without a track have no person.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.optimize import linear_sum_assignment

from ..atomic import atomic_path
from ..faces.identity.cluster import cluster
from ..faces.identity.collect import Identities
from ..faces.identity.embedder import EMBED_DIM
from .gallery import Gallery
from .store import read_part

NO_UNIT = np.iinfo(np.int64).min
EMB_SCHEMA = pa.schema([pa.field("track", pa.int64()), pa.field("frame", pa.int64()),
                        pa.field("face", pa.int64()), pa.field("frames", pa.int64()),
                        pa.field("embedding", pa.list_(pa.float32(), EMBED_DIM))])


def identities_table(ids: Sequence[Identities]) -> pa.Table:
    """Embeddings of a chunk as a table of EMB_SCHEMA (what the store keeps)."""
    cols = {name: np.concatenate([getattr(x, name) for x in ids]) if ids else np.zeros(0, np.int64)
            for name in ("track", "frame", "face", "frames")}
    emb = (np.concatenate([x.embedding for x in ids]) if ids
           else np.zeros((0, EMBED_DIM), np.float32)).astype(np.float32)
    cols["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), EMBED_DIM)
    return pa.Table.from_pydict(cols, schema=EMB_SCHEMA)


def unit_keys(track: np.ndarray, frame: np.ndarray, face: np.ndarray,
              photo: np.ndarray) -> np.ndarray:
    """(r,) int64 unit of each row: its track, a photo face's -1 - (frame << 20 | face),
    NO_UNIT for a video face without a track or a row without a face. Arrays with -1 (or
    NaN-free masks) for nulls; photo (r,) bool: the row is a still's."""
    keys = np.full(len(track), NO_UNIT, np.int64)
    keys[track >= 0] = track[track >= 0]
    still = (track < 0) & (face >= 0) & photo
    keys[still] = -1 - ((frame[still] << 20) | face[still])
    return keys


@dataclass
class _Input:
    """One input's units: keys (u,), their embeddings (u, 128), the cannot-link pairs
    (p, 2) of unit indices, and each row's unit index (r,), -1 where none."""

    keys: np.ndarray
    emb: np.ndarray
    cannot: np.ndarray
    row_unit: np.ndarray
    frames: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def read_input(parts: Sequence[Path], embeddings: Sequence[Path]) -> _Input:
    """An input's units from its store's finished parts and embedding files."""
    cols = ["frame", "face", "track", "t_sec"]
    rows = (pa.concat_tables([read_part(p, cols) for p in parts]) if parts
            else pa.table({c: pa.array([], pa.int64()) for c in cols}))
    track = rows["track"].fill_null(-1).to_numpy().astype(np.int64)
    face = rows["face"].fill_null(-1).to_numpy().astype(np.int64)
    frame = rows["frame"].to_numpy().astype(np.int64)
    photo = rows["t_sec"].is_null().to_numpy(zero_copy_only=False)
    row_keys = unit_keys(track, frame, face, photo)
    emb = (pa.concat_tables([read_part(p) for p in embeddings]) if embeddings
           else EMB_SCHEMA.empty_table())
    keys = unit_keys(emb["track"].to_numpy(), emb["frame"].to_numpy(), emb["face"].to_numpy(),
                     np.ones(emb.num_rows, bool))
    vectors = (np.asarray(emb["embedding"].combine_chunks().flatten()).reshape(-1, EMBED_DIM)
               if emb.num_rows else np.zeros((0, EMBED_DIM), np.float32))
    row_unit = _lookup(keys, row_keys)
    return _Input(keys, vectors, _cannot_links(frame, row_unit), row_unit,
                  emb["frames"].to_numpy())


def _lookup(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """(r,) the index in keys (u,) of each wanted key, -1 where absent."""
    if not len(keys):
        return np.full(len(wanted), -1, np.int64)
    order = np.argsort(keys, kind="stable")
    pos = np.minimum(np.searchsorted(keys[order], wanted), len(keys) - 1)
    return np.where(keys[order][pos] == wanted, order[pos], -1).astype(np.int64)


def _cannot_links(frame: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """(p, 2) pairs of units seen in one frame."""
    ok = unit >= 0
    fu = np.unique(np.stack([frame[ok], unit[ok]], 1), axis=0)  # sorted by frame
    if not len(fu):
        return np.zeros((0, 2), np.int64)
    starts = np.flatnonzero(np.r_[True, fu[1:, 0] != fu[:-1, 0]])
    ends = np.r_[starts[1:], len(fu)]
    pairs = {(int(fu[i, 1]), int(fu[j, 1])) for s, e in zip(starts, ends) if e - s > 1
             for i in range(s, e) for j in range(i + 1, e)}
    return np.array(sorted(pairs), np.int64).reshape(-1, 2)


@dataclass
class People:
    """The persons of a run: each input's row persons (r,) object (str or None), and what
    the metadata records."""

    rows: list[np.ndarray]
    unit_person: list[np.ndarray]  # per input (u,) the person of each unit
    named: dict[str, int] = field(default_factory=dict)  # gallery name -> its persons
    count: int = 0


def assign_people(inputs: Sequence[_Input], scope: str, threshold: float,
                  gallery: Gallery | None = None) -> People:
    """Cluster each input's units (scope "video"), then, for "across", the inputs'
    clusters together; name them from the gallery; number the rest p1, p2, ... in input
    order, then order of first appearance."""
    local = [cluster(x.emb, threshold, x.cannot) for x in inputs]
    sums, weights, cannot, owner = [], [], [], []
    base = 0
    for i, (x, lab) in enumerate(zip(inputs, local)):
        k = int(lab.max()) + 1 if len(lab) else 0
        sums.append(np.stack([x.emb[lab == c].sum(0) for c in range(k)]) if k
                    else np.zeros((0, EMBED_DIM)))
        weights.append(np.bincount(lab, minlength=k).astype(np.float64))
        cannot.append(lab[x.cannot] + base)
        owner += [i] * k
        base += k
    sums, weights = np.concatenate(sums), np.concatenate(weights)
    cannot, owner = np.concatenate(cannot).reshape(-1, 2), np.asarray(owner, np.int64)
    if scope == "across" and len(sums):
        final = cluster(sums, threshold, cannot, weights)
    else:
        final = np.arange(len(sums), dtype=np.int64)
    offsets = np.cumsum([0] + [int(lab.max()) + 1 if len(lab) else 0 for lab in local])
    unit_final = [final[lab + offsets[i]] if len(lab) else lab for i, lab in enumerate(local)]
    names = _names(final, sums, weights, cannot, owner, scope, threshold, gallery)
    return _numbered(inputs, unit_final, names)


def _names(final, sums, weights, cannot, owner, scope, threshold, gallery) -> dict[int, str]:
    """final person -> gallery name: one name per person, a name at most once an input
    ("video") or once a run ("across"), only at an average similarity >= threshold."""
    if gallery is None or not len(gallery) or not len(final):
        return {}
    k = int(final.max()) + 1
    psum = np.zeros((k, sums.shape[1]))
    np.add.at(psum, final, sums)
    pw = np.bincount(final, weights, minlength=k)
    pown = np.zeros(k, np.int64)  # the group a name is given once in: the run, or the input
    if scope != "across":
        pown[final] = owner
    names: dict[int, str] = {}
    for group in np.unique(pown):
        persons = np.flatnonzero(pown == group)
        sim = (psum[persons] @ gallery.sums.T) / np.outer(pw[persons], gallery.counts)
        cost = np.where(sim >= threshold, -sim, 1e6)
        r, c = linear_sum_assignment(cost)
        for a, b in zip(r, c):
            if cost[a, b] < 1e6:
                names[int(persons[a])] = gallery.names[b]
    return names


def _numbered(inputs, unit_final, names: dict[int, str]) -> People:
    """Row persons: gallery names, else p1, p2, ... in order of first appearance."""
    ids: dict[int, str] = {}
    rows, n = [], 0
    for x, uf in zip(inputs, unit_final):
        person = np.where(x.row_unit >= 0, uf[np.maximum(x.row_unit, 0)] if len(uf) else -1, -1)
        _, first = np.unique(person, return_index=True)
        for p in person[np.sort(first)]:
            if p >= 0 and int(p) not in ids:
                if int(p) in names:
                    ids[int(p)] = names[int(p)]
                else:
                    n += 1
                    ids[int(p)] = f"p{n}"
        rows.append(np.array([ids[int(p)] if p >= 0 else None for p in person], object))
    named: dict[str, int] = {}
    for p, name in names.items():
        named[name] = named.get(name, 0) + 1
    unit_person = [np.array([ids.get(int(p)) for p in uf], object) for uf in unit_final]
    return People(rows, unit_person, named, len(ids))


def write_embeddings(path: Path, sources: Sequence[str], inputs: Sequence[_Input],
                     people: People) -> None:
    """`--save-embeddings`: one row per track (or photo face), with its person, atomically."""
    tables = []
    for src, x, persons in zip(sources, inputs, people.unit_person):
        is_track = x.keys >= 0
        code = np.where(is_track, 0, -1 - x.keys)
        tables.append(pa.table({
            "source": pa.array([src] * len(x.keys), pa.string()),
            "track": pa.array(np.where(is_track, x.keys, 0), mask=~is_track),
            "frame": pa.array(code >> 20, mask=is_track),
            "face": pa.array(code & 0xFFFFF, mask=is_track),
            "person": pa.array(list(persons), pa.string()), "frames_used": x.frames,
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(x.emb.astype(np.float32).ravel()), EMBED_DIM)}))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(pa.concat_tables(tables) if tables else pa.table({}), tmp)


@dataclass
class PeopleJob:
    """What publishing needs to give rows their person (from the plan and the gallery)."""

    scope: str
    threshold: float
    gallery: Gallery | None = None
    save: Path | None = None

    def metadata(self) -> dict:
        """The gallery's people and what of it was not used."""
        g = self.gallery
        return {"gallery_people": g.names, "gallery_warnings": g.warnings} if g else {}

    def persons(self, parts: Sequence[Sequence[Path]], embeddings: Sequence[Sequence[Path]],
                sources: Sequence[str], final: bool) -> tuple[list[np.ndarray], dict]:
        """Each input's row persons (its parts' rows in order), and the metadata's record;
        the embeddings' file too, when asked and `final`."""
        inputs = [read_input(p, e) for p, e in zip(parts, embeddings)]
        people = assign_people(inputs, self.scope, self.threshold, self.gallery)
        if final and self.save is not None:
            write_embeddings(self.save, sources, inputs, people)
        return people.rows, self.metadata() | {"persons": people.count, "gallery_names": people.named,
                             "tracks": int(sum(len(x.keys) for x in inputs)),
                             "embeddings_file": str(self.save) if final and self.save else None}
