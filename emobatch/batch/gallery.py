"""`--people-gallery DIR`: reference photos, one person each (`alice.jpg`, or `alice/` with
several), embedded once before any input is processed, with the run's own detector and
the embedder's alignment."""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, PeopleWarning, UsageError
from ..faces.identity.embedder import EMBED_DIM, Embedder
from ..media.filetypes import kind_by_suffix
from ..media.sources import iter_frames
from ..pipeline import MAX_STILL_SIDE, detector_of
from ..plan import RunPlan


NUMBERED = re.compile(r"p\d+")  # the ids of people without a name: p1, p2, ...


@dataclass
class Gallery:
    """names (g,); sums (g, 128) of each person's photos' unit embeddings; counts (g,);
    warnings: what was not used, in words."""

    names: list[str] = field(default_factory=list)
    sums: np.ndarray = field(default_factory=lambda: np.zeros((0, EMBED_DIM), np.float32))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)


def gallery_photos(folder: Path) -> dict[str, list[Path]]:
    """name -> its photos, sorted; UsageError for a folder that cannot be listed or holds
    no photo."""
    try:
        entries = sorted(Path(folder).iterdir())
    except OSError as e:
        raise UsageError(f"--people-gallery {folder} cannot be read: "
                         f"{e.strerror or e}") from None
    people: dict[str, list[Path]] = {}
    for p in entries:
        if p.is_dir():
            try:
                photos = sorted(q for q in p.iterdir() if kind_by_suffix(q) == "image")
            except OSError as e:
                warnings.warn(f"gallery folder {p} cannot be read ({e.strerror or e}): "
                              f"{p.name} is not used", PeopleWarning, stacklevel=2)
                continue
            people.setdefault(p.name, []).extend(photos)
        elif kind_by_suffix(p) == "image":
            people.setdefault(p.stem, []).append(p)
    if not any(people.values()):
        raise UsageError(f"--people-gallery {folder} holds no photo (name.jpg, or name/ "
                         f"with photos)")
    numbered = [n for n in people if NUMBERED.fullmatch(n)]
    if numbered:  # p3 the gallery's and p3 a stranger: one id, two people
        raise UsageError(f"--people-gallery {folder}: the name(s) {', '.join(numbered)} would "
                         f"read as ids of people without a name (p1, p2, ...): rename them")
    return people


def load_gallery(folder: Path, plan: RunPlan) -> Gallery:
    """Each person's photos embedded; a photo without exactly one face is left out with a
    PeopleWarning naming it, as is a person left without any photo. UsageError when no
    person is left."""
    detector, embedder = detector_of(plan, plan.detector_stills), Embedder()
    gallery = Gallery()
    sums, counts = [], []
    for name, photos in gallery_photos(folder).items():
        embs = [e for e in (_embed_photo(p, detector, embedder, gallery) for p in photos)
                if e is not None]
        if not embs:
            _warn(gallery, f"gallery person {name!r} has no usable photo: not used")
            continue
        gallery.names.append(name)
        sums.append(np.sum(embs, axis=0))
        counts.append(len(embs))
    if not gallery.names:
        raise UsageError(f"--people-gallery {folder}: no photo with one face in it "
                         f"({'; '.join(gallery.warnings)})")
    gallery.sums, gallery.counts = np.stack(sums).astype(np.float32), np.array(counts)
    return gallery


def _embed_photo(path: Path, detector, embedder: Embedder, gallery: Gallery
                 ) -> np.ndarray | None:
    """(128,) the embedding of the one face in the photo at `path`, else None (warned)."""
    try:
        frame = next(iter(iter_frames(path, 1)))
    except (InputError, StopIteration) as e:
        _warn(gallery, f"gallery photo {path} cannot be read ({e}): not used")
        return None
    faces = detector.detect(frame.image, min(1.0, MAX_STILL_SIDE / max(frame.image.shape[:2])))
    if len(faces) != 1:
        _warn(gallery, f"gallery photo {path} shows {'no' if not len(faces) else len(faces)} "
                       f"face{'s' if len(faces) != 1 else ''}, not one: not used")
        return None
    return embedder.embed_faces(frame.image, faces.landmarks)[0]


def _warn(gallery: Gallery, message: str) -> None:
    gallery.warnings.append(message)
    warnings.warn(message, PeopleWarning, stacklevel=3)
