"""A run's progress on disk, beside its output: the base of `--resume` and of safe outputs.

    results.parquet
    .results.parquet.emobatch/          the run's folder (removed when the run completes)
        lock                            flock-ed by the live run; a dead run holds nothing
        manifest.json                   settings fingerprint (settings + weights sha256)
        items/<key>/                    one folder per input; key = its resolved path
            input.json                  size, mtime and a hash of its ends: a changed input
                                        is redone from the start, never resumed
            part-00000.arrow            the rows of each chunk (a video's checkpoint interval),
                                        with each face's landmarks for the annotated output
            tail.arrow                  rows after the last checkpoint, left by Ctrl-C/SIGTERM
            state-00000.json            the per-video state after that chunk (the resume point)
            emb-00000.arrow             face embeddings of the tracks that ended in that chunk
                                        (biometric data: removed with the folder)
            done.json                   the input's result, written last; rewritten with
                                        its annotated output once that is drawn

Every file is written atomically, and a chunk counts once its state (or done.json) exists,
so a kill at any instant leaves a consistent folder: `--resume` redoes at most one chunk.
The rows, states and results are not fsynced (a run of many photos spent most of each
input's overhead in fsyncs): after a system crash, not a killed process, one may be missing
or cut short, and `--resume` first removes the unreadable ones (`ItemStore.repair`), so
such an input continues from its last intact checkpoint or is redone. Rows are kept as
Arrow IPC files, not Parquet: a photo's few rows are written and read back (twice, at
publish) in a tenth of the time, and chunks of many rows are zstd-compressed all the same.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..faces import state_json
from ..errors import OutputError, UsageError
from .lock import FolderLock
from ..atomic import atomic_path, remove_stale_temps, write_text, writing
from ..media.filetypes import not_regular, resolved
from ..timeline import TimelinePaths


@dataclass
class WorkItem:
    """One input of a run: where it is in the run's order and where its outputs go."""

    index: int
    source: Path
    key: str
    annotate: Path | None = None


def item_key(path: Path) -> str:
    """The name of an input's folder in the store: a hash of its resolved path."""
    return hashlib.sha256(os.fsencode(resolved(path))).hexdigest()[:20]


EDGE_BYTES = 1 << 20
ROWS = ".arrow"  # the rows' and embeddings' files (Arrow IPC)
COMPRESS_ROWS = 256


def input_identity(path: Path) -> str:
    """What a resumed run compares: size, mtime and a hash of the first and last MiB (a
    same-size copy with its old mtime restored differs there; reading all could take long)."""
    try:
        st = path.stat()
        kind = not_regular(st)
        if kind is not None:  # never opened (a FIFO's open blocks): processing reports it
            return kind
        h = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as fh:
            h.update(fh.read(EDGE_BYTES))
            if st.st_size > EDGE_BYTES:
                fh.seek(max(st.st_size - EDGE_BYTES, EDGE_BYTES))
                h.update(fh.read(EDGE_BYTES))
        return f"{st.st_size}|{st.st_mtime_ns}|{h.hexdigest()}"
    except OSError as e:
        return type(e).__name__


@dataclass
class Resume:
    """Where a video continues: after `chunk`, at frame index `next_index`."""

    chunk: int
    next_index: int
    processed: int
    frames: int
    faces: int
    state: dict[str, Any]


class ItemStore:
    """The on-disk progress of one input (usable from any process that sees the folder)."""

    def __init__(self, folder: Path) -> None:
        self.dir = Path(folder)
        self._made = False

    def _write(self, fn, path: Path, *args) -> None:
        with writing(path):
            if not self._made:  # never re-creates a run folder that was removed
                self.dir.mkdir(exist_ok=True)
                self._made = True
            fn(path, *args)

    def holds(self, identity: str) -> bool:
        """Whether this store's progress is of the input as it is now (`input_identity`)."""
        try:
            return json.loads((self.dir / "input.json").read_text())["identity"] == identity
        except (OSError, ValueError, KeyError):
            return False

    def claim(self, identity: str) -> bool:
        """Make this store the input's as it is now: progress of another version of it (or
        of an unknown one) is removed. True if there was any."""
        if self.holds(identity):
            return False
        stale = [p for p in self.dir.iterdir()] if self.dir.is_dir() else []
        for p in stale:
            p.unlink(missing_ok=True)
        self._write(_write_text, self.dir / "input.json", json.dumps({"identity": identity}))
        return bool(stale)

    def part(self, chunk: int) -> Path:
        return self.dir / f"part-{chunk:05d}{ROWS}"

    def embeddings_file(self, chunk: int) -> Path:
        return self.dir / f"emb-{chunk:05d}{ROWS}"

    def write_chunk(self, chunk: int, table: pa.Table, resume: Resume | None,
                    embeddings: pa.Table | None = None) -> None:
        """The rows (and embeddings) of a chunk, then (for a checkpoint) the state that
        makes it count."""
        if embeddings is not None and embeddings.num_rows:
            self._write(_write_rows, self.embeddings_file(chunk), embeddings)
        self._write(_write_rows, self.part(chunk), table)
        if resume is not None:
            self._write(_write_text, self.dir / f"state-{chunk:05d}.json",
                        state_json.dumps(asdict(resume)))

    def write_tail(self, table: pa.Table) -> None:
        """Rows after the last checkpoint of an interrupted input: for the `.partial`
        timeline only (a resumed run computes them again)."""
        self._write(_write_rows, self.dir / f"tail{ROWS}", table)

    def partial_parts(self) -> list[Path]:
        """Everything this input wrote: finished chunks, then its interrupted tail."""
        tail = self.dir / f"tail{ROWS}"
        return self.parts() + ([tail] if tail.is_file() and self.done() is None else [])

    def _chunks(self, pattern: str) -> list[Path]:
        """Files of one kind in chunk order (by number: names stop sorting past 99,999)."""
        return sorted(self.dir.glob(pattern), key=lambda p: int(p.stem.split("-")[1]))

    def repair(self) -> None:
        """After a system crash: remove the files that cannot be read (written without
        fsync, see the module), then a done.json whose chunks are not all there."""
        for path in self.dir.iterdir():
            if path.suffix in (".json", ROWS) and not _readable(path):
                path.unlink(missing_ok=True)
        if self.done() is not None and not self.complete():
            (self.dir / "done.json").unlink()

    def resume_point(self) -> Resume | None:
        """The last checkpoint whose rows and state are both on disk."""
        for path in reversed(self._chunks("state-*.json")):
            r = Resume(**state_json.loads(path.read_text()))
            if self.part(r.chunk).is_file():
                return r
        return None

    def parts(self, upto: int | None = None) -> list[Path]:
        """Part files in chunk order (of the chunks that count, when `upto` is given)."""
        parts = self._chunks(f"part-*{ROWS}")
        return [p for p in parts if upto is None or int(p.stem[5:]) <= upto]

    def drop_after(self, chunk: int) -> None:
        """Forget chunks after `chunk` (left by a run killed or interrupted inside them)."""
        for pattern in (f"part-*{ROWS}", "state-*.json", f"emb-*{ROWS}"):
            for p in self.dir.glob(pattern):
                if int(p.stem.split("-")[1]) > chunk:
                    p.unlink(missing_ok=True)
        (self.dir / f"tail{ROWS}").unlink(missing_ok=True)

    def finish(self, result: dict[str, Any], chunks: int) -> None:
        self._write_done(result, chunks)

    def record_annotated(self, path: Path) -> None:
        """The finished input's annotated output is drawn (at `path`): a resumed run keeps it."""
        result, chunks = self.done()
        self._write_done(result | {"annotated": str(path)}, chunks)

    def _write_done(self, result: dict[str, Any], chunks: int) -> None:
        self._write(_write_text, self.dir / "done.json",
                    json.dumps({"result": result, "chunks": chunks}))

    def done(self) -> tuple[dict[str, Any], int] | None:
        """(result, number of chunks) of a finished input, else None."""
        path = self.dir / "done.json"
        if not path.is_file():
            return None
        d = json.loads(path.read_text())
        return d["result"], d["chunks"]

    def complete(self) -> bool:
        """Finished, with every chunk's rows on disk."""
        done = self.done()
        return done is not None and len(self.parts(done[1] - 1)) == done[1]

    def embeddings(self, parts: list[Path]) -> list[Path]:
        """The embedding files of the chunks of `parts` (those that have any)."""
        files = (self.embeddings_file(int(p.stem.split("-")[1])) for p in parts
                 if p.name != f"tail{ROWS}")
        return [f for f in files if f.is_file()]

    def finished_parts(self) -> list[Path]:
        """The rows to publish for this input: all of a finished one, else its checkpoints."""
        done = self.done()
        if done is not None:
            return self.parts(done[1] - 1)
        r = self.resume_point()
        return self.parts(r.chunk) if r else []


def _write_rows(path: Path, table: pa.Table) -> None:
    """An Arrow IPC file; zstd from COMPRESS_ROWS rows on (below, it costs more than it saves)."""
    options = pa.ipc.IpcWriteOptions(
        compression="zstd" if table.num_rows >= COMPRESS_ROWS else None)
    with atomic_path(path, durable=False) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema,
                                                                options=options) as w:
            w.write_table(table)


def read_part(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A part or embeddings file of a store (read whole, in one call: a run of 20,000
    photos reads each twice at publish)."""
    table = pa.ipc.open_file(pa.BufferReader(path.read_bytes())).read_all()
    return table.select(columns) if columns is not None else table


def _write_text(path: Path, text: str) -> None:
    write_text(path, text, durable=False)


def _readable(path: Path) -> bool:
    """Whether a store file reads back whole (JSON parses; Arrow's file has its footer)."""
    try:
        if path.suffix == ".json":
            json.loads(path.read_text())
        else:
            read_part(path)
        return True
    except (OSError, ValueError, pa.ArrowException):
        return False


class RunStore:
    """The run folder beside the timeline (`TimelinePaths.run_dir`): a lock, a manifest, and
    an ItemStore per input."""

    def __init__(self, paths: TimelinePaths) -> None:
        self.out = paths.timeline
        self.dir = paths.run_dir
        self._held: FolderLock | None = None

    def item(self, item: WorkItem) -> ItemStore:
        return ItemStore(self.dir / "items" / item.key)

    def open(self, fingerprint: str, resume: bool, describe: dict[str, Any]) -> bool:
        """Lock the folder and check it against this run; True if there is progress to reuse.

        Raises UsageError: another live run holds it; an unfinished run is there and
        `resume` is False; or its settings/weights differ from this run's.
        """
        with writing(self.dir, "create"):
            (self.dir / "items").mkdir(parents=True, exist_ok=True)
            self._lock()
        manifest = self.dir / "manifest.json"
        try:
            if manifest.is_file():
                old = json.loads(manifest.read_text())
                if not resume:
                    raise UsageError(
                        f"an unfinished run left its progress for {self.out} in {self.dir} "
                        f"(started {old.get('started', '?')}): add --resume to continue it, "
                        f"or delete that folder to start over")
                if old.get("fingerprint") != fingerprint:
                    raise UsageError(
                        f"--resume: the settings or weights differ from those of the run being "
                        f"resumed ({_diff(old, describe)}); "
                        f"rerun with the same ones, or delete {self.dir} to start over")
                for item in (self.dir / "items").iterdir():
                    if item.is_dir():
                        ItemStore(item).repair()
                found = True
            else:
                write_text(manifest, json.dumps({"fingerprint": fingerprint, **describe}, indent=1))
                found = False
        except OSError as e:
            self.remove()
            raise OutputError(f"cannot write {manifest}: {e.strerror or e}") from e
        except BaseException:
            self.release()
            raise
        remove_stale_temps(self.dir, recursive=True, any_owner=True)  # ours: we hold the lock
        return found

    def _lock(self) -> None:
        busy = (f"another emobatch run (pid {{pid}}) is writing {self.out}; wait for it or "
                f"choose another --out")
        lock = FolderLock(self.dir / "lock", busy)
        lock.acquire()
        self._held = lock
        (self.dir / "items").mkdir(parents=True, exist_ok=True)  # a run that just finished

    @property
    def _partial_mark(self) -> Path:
        return self.dir / "published-partial"

    def mark_partial(self) -> None:
        """Record that this run (or one it resumes) published the `.partial` timeline."""
        try:
            write_text(self._partial_mark, "")
        except OSError:  # unrecorded, the partial is only left in place by the complete run
            pass

    def published_partial(self) -> bool:
        """Whether the `.partial` timeline beside `out` is this run's (or its predecessor's),
        so a complete run may remove it: another run's file of that name is left alone."""
        return self._partial_mark.is_file()

    def release(self) -> None:
        if self._held is not None:
            self._held.release()
            self._held = None

    def remove(self) -> None:
        """The run is published: its folder goes (the lock last, while still held)."""
        shutil.rmtree(self.dir / "items", ignore_errors=True)
        (self.dir / "manifest.json").unlink(missing_ok=True)
        self._partial_mark.unlink(missing_ok=True)
        (self.dir / "lock").unlink(missing_ok=True)
        self.release()
        try:
            self.dir.rmdir()
        except OSError:
            pass


def _diff(old_manifest: dict, describe: dict) -> str:
    """What differs between the run being resumed and this one, in words."""
    if "resume_key" not in old_manifest:  # written before the manifest recorded it
        return "its run folder was written by an older emobatch"
    old, new = old_manifest["resume_key"], describe.get("resume_key", {})
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)
