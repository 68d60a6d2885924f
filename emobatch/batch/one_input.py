"""One input into its store (emobatch.batch.store): the pipeline's rows and checkpoints,
continuing from the last checkpoint; the unit of work every runner runs. Its annotated
output is drawn later, from these rows (emobatch.batch.annotated)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from traceback import format_exc
from typing import Any, Callable

from ..errors import InputError, OutputError
from ..media.sources import VideoInfo, kind_of, video_info
from ..pipeline import Checkpoint, FacePipeline
from ..memory import release_free_memory
from ..faces.identity.collect import Identities
from .people import identities_table
from .sinks import RowBuffer
from .store import ItemStore, Resume, WorkItem, input_identity


@dataclass
class SourceResult:
    """What happened to one input file."""

    source: Path
    kind: str | None
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    error: str | None = None
    annotated: Path | None = None  # drawn once the run's inputs are done
    resumed_from: int | None = None  # frame index a resumed video continued from
    traceback: str | None = None  # an unexpected failure's formatted traceback (a bug, not
    #                               a bad input: InputErrors have none)
    changed: bool = False  # redone: the input changed since the run that was resumed
    reused: bool = False  # finished by the run that was resumed, kept as it was
    restarted: bool = False  # started by the run that was resumed, redone from its start
    #                          (stopped before its first checkpoint)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["source"], d["annotated"] = str(self.source), self.annotated and str(self.annotated)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SourceResult":
        # stores of runs before `traceback` existed hold dicts without it: the default
        return cls(**{**d, "source": Path(d["source"]),
                      "annotated": d["annotated"] and Path(d["annotated"])})


ProgressFn = Callable[[str, dict[str, Any]], None]


def _header(path: Path, kind: str | None) -> VideoInfo | None:
    """A video's header, read once for the whole input (the stream and the progress
    display); None for a photo, or where it cannot be read (then the stream raises
    the InputError that becomes this input's error)."""
    try:
        return video_info(path) if kind == "video" else None
    except InputError:
        return None


def _claim(store: ItemStore, path: Path) -> tuple[SourceResult, SourceResult | None]:
    """Make the store this input's as it is now: a fresh result to fill (`changed` if the
    store held another version of it, `started` if it held this one's unfinished work),
    and the stored result if the input is done already."""
    identity = input_identity(path)
    started = store.holds(identity)  # the run being resumed began this very input
    res = SourceResult(path, None, changed=store.claim(identity), restarted=started)
    done = store.done()
    if done is not None:
        return res, SourceResult.from_dict(done[0])
    res.kind = kind_of(path)
    return res, None


def _continue(store: ItemStore, res: SourceResult) -> tuple[int, Checkpoint | None]:
    """The chunk to write next and where the stream continues (None: from the start); a
    resumed video's counts so far go into `res` (and `restarted` stays only where the
    input's earlier work had no checkpoint). Chunks after the last checkpoint go."""
    resume = store.resume_point()
    if resume is None:
        store.drop_after(-1)
        return 0, None
    res.restarted = False
    res.frames, res.faces, res.resumed_from = resume.frames, resume.faces, resume.next_index
    store.drop_after(resume.chunk)
    return resume.chunk + 1, Checkpoint(resume.next_index, resume.processed, resume.state)


def process_item(pipe: FacePipeline, item: WorkItem, store: ItemStore,
                 progress: ProgressFn | None = None) -> SourceResult:
    """Run one input into its store, continuing from its last checkpoint if it has one.

    A bad input becomes an error result, never an exception; an output that cannot be
    written raises OutputError; Ctrl-C (and SIGTERM, see the CLI) keeps the rows processed
    so far in the store's tail, for the `.partial` timeline, and re-raises.
    """
    res, done = _claim(store, item.source)
    if done is not None:
        return done
    path = item.source
    chunk, start = _continue(store, res)
    t0, rows = time.perf_counter(), RowBuffer(pipe.classifier.labels)
    info = _header(path, res.kind)
    if progress:
        progress("source", {"source": path, "info": info})
    ids: list[Identities] = []
    try:
        for x in pipe.stream(path, start, info):
            if isinstance(x, Identities):  # written with its chunk
                ids.append(x)
                continue
            if isinstance(x, Checkpoint):
                store.write_chunk(chunk, rows.take(), Resume(
                    chunk, x.next_index, x.processed, res.frames, res.faces, x.state),
                    identities_table(ids))
                chunk, ids = chunk + 1, []
                continue
            frame, faces = x
            rows.add(frame, faces)
            res.frames += 1
            res.faces += len(faces)
            if progress:
                progress("frame", {"source": path, "frames": res.frames, "faces": res.faces})
    except InputError as e:
        res.error = str(e)
    except OutputError:
        raise
    except (KeyboardInterrupt, SystemExit):
        store.write_tail(rows.take())
        raise
    except Exception as e:  # an unexpected failure on one file must not end the run
        res.error = f"{type(e).__name__}: {e}"
        res.traceback = format_exc()
    store.write_chunk(chunk, rows.take(), None, identities_table(ids))
    res.seconds = time.perf_counter() - t0
    store.finish(res.to_dict(), chunk + 1)
    release_free_memory()
    return res
