"""Checks of a run's outputs before any work, and the annotated name of every input.

Nothing emobatch writes may land on an input, inside an input folder, or where it cannot be
written; every such problem is a UsageError (exit 2) raised before the first frame.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..media.annotate import annotated_name
from ..media.filetypes import resolved
from ..atomic import NAME_MAX, fit_name, temp_path, writing
from ..timeline import INPUTS_SCHEMA, TimelinePaths, timeline_reader, timeline_writer
from .lock import FolderLock
from .store import WorkItem, item_key
from ..errors import UsageError


def annotation_root(inputs: Sequence[str | Path]) -> Path:
    """The common folder of the inputs, so annotated names mirror them below --annotate."""
    dirs = [resolved(p) if Path(p).is_dir() else resolved(p).parent for p in inputs]
    return Path(os.path.commonpath(dirs)) if dirs else Path.cwd()


def _probe_writable(folder: Path, what: str) -> None:
    """Create `folder` if needed and prove a file can be made in it (root ignores modes, so
    only trying tells)."""
    for parent in [folder, *folder.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{what}: {parent} is a file, not a folder")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = temp_path(folder / "probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"{what}: cannot write in {folder}: {e.strerror or e}") from None


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def check_report(report: Path, taken: Sequence[Path], overwrite: bool) -> None:
    """UsageError unless the HTML report may be written at `report`: not a folder, none of
    `taken` (inputs, the timeline and its sidecars, annotated outputs), and, without
    `overwrite`, no existing file but an earlier emobatch report (rewritten by a rerun)."""
    if report.is_dir():
        raise UsageError(f"the report {report} is a folder; give a file name such as "
                         f"{report / 'report.html'}")
    if resolved(report) in {resolved(p) for p in taken}:
        raise UsageError(f"the report {report} would overwrite an input or another output "
                         f"of the run (the timeline, its sidecars, an annotated file)")
    if report.exists() and not overwrite and not _is_report(report):
        raise UsageError(f"{report} exists and is not an emobatch report: add --overwrite "
                         f"(overwrite=True in Python) to replace it, or choose another name")
    _probe_writable(report.parent, "the report")


def _is_report(path: Path) -> bool:
    """Whether `path` holds an HTML report emobatch wrote (its generator tag, in its head)."""
    from ..report.page import GENERATOR

    try:
        with open(path, "rb") as fh:
            return GENERATOR.encode() in fh.read(4096)
    except OSError:
        return False


def check_outputs(paths: TimelinePaths, annotate: Path | None, inputs: Sequence[str | Path],
                  files: Sequence[Path]) -> None:
    """UsageError unless the timeline and the annotate folder can be written safely: none of
    them an input or where another output goes."""
    out = paths.timeline
    try:
        timeline_writer(out)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name such as {out / 'results.parquet'}")
    _probe_writable(out.parent, "--out")
    sources = {resolved(f) for f in files}
    _check_name_lengths(out, paths.written)
    for written in paths.written:
        if written.resolve() in sources:
            raise UsageError(f"--out would overwrite the input {written}")
    for table in (paths.inputs, paths.partial.inputs):
        if table.exists() and not _is_inputs_table(table):
            raise UsageError(f"--out {out.name}: the run writes its inputs table at {table}, "
                             f"which holds another file (another run's timeline?): move it "
                             f"or choose another --out")
    if annotate is None:
        return
    if annotate.exists() and not annotate.is_dir():
        raise UsageError(f"--annotate {annotate} is a file, not a folder")
    ann = annotate.resolve()
    for item in inputs:
        p = resolved(item)
        # a walked folder may not overlap it at all; a file's own folder may not be it
        clash = (_inside(ann, p) or _inside(p, ann)) if p.is_dir() else ann == p.parent
        if clash:
            raise UsageError(f"--annotate {annotate} overlaps the input folder of {item}: "
                             f"annotated copies would overwrite or mix with the originals; "
                             f"choose a folder outside the inputs")
    if _inside(paths.run_dir.resolve(), ann):
        raise UsageError("--annotate must not contain the run's own folder")
    _probe_writable(annotate, "--annotate")


def _is_inputs_table(path: Path) -> bool:
    """Whether `path` is an inputs table emobatch wrote (`TimelinePaths.inputs`)."""
    try:
        return timeline_reader(path).columns(path) == INPUTS_SCHEMA.names
    except Exception:  # unreadable, or not in the format its suffix says: not ours
        return False


def _check_name_lengths(out: Path, written: Sequence[Path]) -> None:
    """UsageError if a file the run may publish beside `out` has too long a name (the
    .partial timeline's sidecars are the longest)."""
    names = [p.name for p in written]
    longest = max(names, key=lambda n: len(n.encode()))
    if len(longest.encode()) > NAME_MAX:
        raise UsageError(f"--out {out.name!r} is too long a name: the run would also write "
                         f"{longest!r} ({len(longest.encode())} bytes; file names hold at most "
                         f"{NAME_MAX}); choose a shorter one")


def check_existing(out: Path, items: Sequence[WorkItem], overwrite: bool, resume: bool,
                   resumed: bool) -> None:
    """UsageError if the run would replace the timeline or an annotated output already on
    disk (an earlier run's results) without `overwrite`. Only a run that `resumed` an
    unfinished one continues its own outputs: `resume` asked of an --out with none left is
    a fresh run, which replaces nothing."""
    if overwrite or resumed:
        return
    nothing = (f"there is no unfinished run of {out} to resume, and " if resume else "")
    if out.exists():
        raise UsageError(f"{nothing}{out} exists (an earlier run's timeline): add --overwrite "
                         f"(overwrite=True in Python) to replace it, --resume (resume=True) "
                         f"to continue an interrupted run, or choose another --out")
    taken = next((it.annotate for it in items if it.annotate and it.annotate.exists()), None)
    if taken is not None:
        raise UsageError(f"{nothing}the annotated output {taken} exists (an earlier run's): add "
                         f"--overwrite (overwrite=True in Python) to replace it, or choose "
                         f"another --annotate")


def _fitting(path: Path) -> Path:
    """An annotated name the file system takes: one too long is shortened (`fit_name`)."""
    return path.with_name(fit_name("", path.stem, path.suffix))


def plan_items(files: Sequence[Path], inputs: Sequence[str | Path],
               annotate: Path | None) -> tuple[list[WorkItem], dict[str, str]]:
    """A WorkItem per input, in order, with its annotated path; and the renamed ones.

    Two inputs whose annotated names collide (e.g. `x.avi` beside `x.avi.mp4`, or the same
    relative name from two roots) never overwrite each other: the later one gets
    `name~2.ext` (then ~3, ...), deterministically, and is reported; so is a name too long
    for the file system, shortened with a hash. An annotated name that
    is an input file is refused (UsageError).
    """
    root = annotation_root(inputs)
    sources = {resolved(f) for f in files}
    taken: set[Path] = set()
    renamed: dict[str, str] = {}
    items = []
    for i, f in enumerate(files):
        ann = None
        if annotate is not None:
            want = annotated_name(f, root, annotate)
            ann, k = _fitting(want), 2
            while ann.resolve() in taken:
                ann = _fitting(want.with_name(f"{want.stem}~{k}{want.suffix}"))
                k += 1
            if ann != want:
                renamed[str(f)] = str(ann)
            if ann.resolve() in sources:
                raise UsageError(f"the annotated copy of {f} would overwrite the input {ann}")
            taken.add(ann.resolve())
        items.append(WorkItem(i, Path(f), item_key(Path(f)), ann))
    return items, renamed


LOCK_NAME = ".emobatch.lock"
"""The lock file a live run holds in its --annotate folder."""


def lock_annotate(annotate: Path | None) -> FolderLock | None:
    """Hold the --annotate folder for this run: a second live run writing into it is refused
    (UsageError), so neither replaces the other's files under the names its metadata lists."""
    if annotate is None:
        return None
    lock = FolderLock(annotate / LOCK_NAME,
                      f"another emobatch run (pid {{pid}}) is writing into --annotate "
                      f"{annotate}; wait for it or choose another folder")
    with writing(annotate, "lock"):
        lock.acquire()
    # taken first, then looked for: of two runs starting at once, each sees the other's
    nested = _live_lock_nested(annotate)
    if nested is not None:
        lock.release(remove=True)
        raise UsageError(f"another emobatch run is writing into {nested.parent}, which "
                         f"{'is inside' if _inside(nested.parent, resolved(annotate)) else 'holds'} "
                         f"--annotate {annotate}; wait for it or choose a folder apart")
    return lock


def _live_lock_nested(annotate: Path) -> Path | None:
    """The lock file of a live run on a folder above or below `annotate` (its own lock
    covers the folder, not its tree), if any."""
    folder = resolved(annotate)
    for parent in folder.parents:
        if FolderLock.is_held(parent / LOCK_NAME):
            return parent / LOCK_NAME
    for root, dirs, files in os.walk(folder):
        if root != str(folder) and LOCK_NAME in files and FolderLock.is_held(Path(root, LOCK_NAME)):
            return Path(root, LOCK_NAME)
    return None
