"""A run over many inputs: check the outputs, lock and open the run's store, let a runner
process the inputs, publish the timeline from the stores in input order.

`run()` is the Python API, `run_files()` the run behind it and the CLI.
"""
from __future__ import annotations

import datetime
import signal
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..atomic import remove_stale_temps, writing
from ..errors import OutputError, UsageError
from ..config import Settings
from ..plan import resolve_plan
from ..timeline import TimelinePaths, read_timeline
from .outputs import check_existing, check_outputs, check_report, lock_annotate, plan_items
from .annotated import OutputDrawer
from .one_input import ProgressFn, SourceResult
from .sinks import TimelineSink
from ..media.filetypes import check_inputs_exist, path_text
from ..media.sources import Discovery, discover_inputs
from .runners import Runner, make_runner
from .lock import FolderLock
from .store import RunStore, WorkItem, input_identity, read_part
from .gallery import load_gallery
from .people import PeopleJob


@dataclass
class RunSummary:
    results: list[SourceResult] = field(default_factory=list)
    seconds: float = 0.0
    out: Path | None = None
    paths: TimelinePaths | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    report: Path | None = None

    @property
    def frames(self) -> int:
        return sum(r.frames for r in self.results)

    @property
    def faces(self) -> int:
        return sum(r.faces for r in self.results)

    @property
    def errors(self) -> list[SourceResult]:
        return [r for r in self.results if r.error]


def run(inputs: str | Path | Sequence[str | Path], out: str | Path | None = None,
        annotate: str | Path | None = None, settings: Settings | None = None,
        progress: ProgressFn | None = None, *, resume: bool = False, workers: int | str = 1,
        scheduler: Any = None, report: str | Path | None = None, overwrite: bool = False,
        **kwargs: Any):
    """Process images and videos into an emotion timeline.

    out: a .parquet or .csv path -> returns that Path (written atomically); None -> returns
    a pandas DataFrame (errors in df.attrs['errors']). Keyword arguments set Settings fields
    (validated: a bad value raises ValueError before any work). resume: continue the
    unfinished run at `out`; workers: processes (int or "auto"); scheduler: a Dask
    scheduler address or distributed.Client; report: also write the HTML report there;
    overwrite: replace an existing timeline and annotated outputs (else UsageError).
    """
    unknown = sorted(set(kwargs) - {f.name for f in fields(Settings)})
    if unknown:
        raise UsageError(f"unknown option(s) {', '.join(unknown)}: emobatch.run takes "
                         f"{', '.join(f.name for f in fields(Settings))} and resume, workers, "
                         f"scheduler, report, overwrite")
    settings = settings or Settings(**kwargs)
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    summary = run_files(inputs, out, annotate, settings, progress, resume=resume,
                        workers=workers, scheduler=scheduler, report=report,
                        overwrite=overwrite)
    return summary.out if out is not None else _as_dataframe(summary)


def run_files(inputs: Sequence[str | Path], out: str | Path | TimelinePaths | None,
              annotate: str | Path | None,
              settings: Settings, progress: ProgressFn | None = None, *, resume: bool = False,
              workers: int | str = 1, scheduler: Any = None,
              report: str | Path | None = None, overwrite: bool = False) -> RunSummary:
    """The run behind the CLI and run(): returns the per-source results. out: the timeline,
    or the TimelinePaths the caller built for it (every file of the run is named there).

    Raises UsageError (a ValueError) before any work for an input that does not exist,
    inputs without any photo or video, unusable outputs, existing ones without `overwrite`
    (or `resume`), a live run on the same `out` or `annotate` folder, or an unfinished one
    without `resume`; OutputError when an output cannot be written mid-run (finished work
    stays in the run's folder for `resume`).
    """
    if workers != "auto" and not (isinstance(workers, int) and workers >= 1):
        raise UsageError(f"workers must be an integer >= 1 or 'auto', not {workers!r}")
    inputs = list(inputs)
    tmpdir = tempfile.TemporaryDirectory() if out is None else None
    paths = out if isinstance(out, TimelinePaths) else TimelinePaths(
        Path(tmpdir.name) / "timeline.parquet" if tmpdir else Path(out))
    out = paths.timeline
    ann_dir = Path(annotate) if annotate is not None else None
    report = Path(report) if report is not None else None
    found = _discover(inputs)
    check_outputs(paths, ann_dir, inputs, found.files)
    items, renamed = plan_items(found.files, inputs, ann_dir)
    if report is not None:
        check_report(report, [*found.files, *paths.written,
                              *(it.annotate for it in items if it.annotate)], overwrite)
    summary = RunSummary(out=out, paths=paths, skipped=dict(found.skipped), renamed=renamed,
                         unreadable=[(str(f), r) for f, r in found.unreadable])
    plan = resolve_plan(settings)
    people = _people_job(plan, overwrite or resume)
    store = RunStore(paths)
    # locked before the model loads: a second run on the same `out` is refused at once
    resumed = store.open(plan.fingerprint(ann_dir), resume, {
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "settings": plan.settings.as_metadata(), "resume_key": plan.resume_key(ann_dir),
        "inputs": [str(p) for p in inputs]})
    ann_lock = None
    try:
        ann_lock = lock_annotate(ann_dir)
        check_existing(out, items, overwrite or tmpdir is not None, resume, resumed)
        _remove_stale_temps(paths, ann_dir)
        runner = make_runner(plan, workers, scheduler)
    except BaseException:
        _unlock(ann_lock)
        store.remove() if not resumed else store.release()
        raise
    meta = plan.metadata() | {"inputs": [str(p) for p in inputs], "runner": runner.name,
                              "labels": list(plan.weights_config.labels),
                              "skipped": summary.skipped, "annotated_renamed": renamed,
                              "annotate": str(ann_dir) if ann_dir else None}
    try:
        _run(paths, items, store, runner, progress, meta, summary, found.files, people, settings)
    finally:
        _unlock(ann_lock)
    summary.report = report and _write_report(out, report, ann_dir, settings)
    summary.tmpdir = tmpdir  # keeps an API run's temporary file alive until it is read
    return summary


def _people_job(plan, replace_ok: bool) -> PeopleJob | None:
    """How persons are made at publish (None: people off); the gallery is embedded here,
    before any work: UsageError for an unusable one, or an existing --save-embeddings file
    without --overwrite."""
    s = plan.settings
    if s.people == "off":
        return None
    if s.save_embeddings is not None and s.save_embeddings.exists() and not replace_ok:
        raise UsageError(f"--save-embeddings {s.save_embeddings} exists: use --overwrite "
                         f"to replace it")
    gallery = load_gallery(s.people_gallery, plan) if s.people_gallery is not None else None
    return PeopleJob(s.people, s.people_threshold, gallery, s.save_embeddings)


def _discover(inputs: Sequence[str | Path]) -> Discovery:
    """The inputs' files; UsageError where an input does not exist or none is a photo or
    video (an empty folder: nothing to do is a mistake in the command, said at once)."""
    check_inputs_exist(inputs)
    found = discover_inputs(inputs)
    if not found.files and not found.unreadable:
        skipped = ", ".join(f"{n} {ext}" for ext, n in found.skipped.items())
        raise UsageError("no photo or video in the inputs" + (
            f" (skipped, not an image or video suffix: {skipped})" if skipped else
            " (empty folders)"))
    return found


def _write_report(out: Path, report: Path, ann_dir: Path | None, settings: Settings) -> Path:
    """The run's --report; an interrupt here is marked: the timeline is already complete."""
    from ..report import write_report  # plotly and pandas load only for a report

    try:
        return write_report(out, report, annotate_dir=ann_dir,
                            thumbnails=not settings.blur_faces)
    except KeyboardInterrupt as e:
        e.timeline_complete = out  # what the interrupt stopped was only the report
        raise


def _run(paths: TimelinePaths, items: Sequence[WorkItem], store: RunStore, runner: Runner,
         progress: ProgressFn | None, meta: dict[str, Any], summary: RunSummary,
         files: Sequence[Path], people: PeopleJob | None, settings: Settings) -> None:
    """Process the items, make the person ids, draw the annotated outputs and publish the
    timeline; on Ctrl-C / SIGTERM (also while drawing or publishing) publish the finished
    rows as the `.partial` timeline and keep the store for --resume. The runner is closed
    after."""
    t0 = time.perf_counter()
    results: dict[int, SourceResult] = {}
    try:
        _execute(items, store, runner, progress, results, files)
        parts = [store.item(it).finished_parts() for it in items]
        with writing("the person ids", "make"):
            persons = _persons(items, store, parts, people, final=True)
        drawer = OutputDrawer(runner, store, meta["labels"], settings, progress)
        drawer.draw(items, parts, persons[0], results)  # tags show the timeline's persons
        _check_annotated(results)
        summary.results = [results[it.index] for it in items]
        summary.seconds = time.perf_counter() - t0
        _publish(paths, items, store, meta, results, summary, summary.seconds, people=people,
                 persons=persons)
    except (KeyboardInterrupt, SystemExit):
        try:
            with _signals_ignored():  # a second Ctrl-C must not cut the partial short
                _publish(paths, items, store, meta, results, summary, time.perf_counter() - t0,
                         partial=True, people=people)
                store.mark_partial()
        finally:
            store.release()
        raise
    except BaseException:
        store.release()
        raise
    finally:
        runner.close()
    store.remove()


def _check_annotated(results: dict[int, SourceResult]) -> None:
    """An annotated output removed during the run (its folder deleted) becomes its input's
    error, not a path the metadata lists that does not exist."""
    for i, r in results.items():
        if r.annotated is not None and not r.annotated.is_file():
            results[i] = replace(r, annotated=None, error=r.error or (
                f"its annotated output {r.annotated} was removed during the run"))


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """SIGINT and SIGTERM ignored inside (the run is already stopping for one of them);
    only where Python handles signals, its main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _unlock(lock: FolderLock | None) -> None:
    if lock is not None:
        lock.release(remove=True)


def _remove_stale_temps(paths: TimelinePaths, ann_dir: Path | None) -> None:
    """Temp files that killed runs left beside the timeline (only the holder of its lock
    writes those) and under --annotate (which other runs may share)."""
    for name in paths.written:
        remove_stale_temps(name.parent, name.name, any_owner=True)
    if ann_dir is not None:
        remove_stale_temps(ann_dir, recursive=True)


def _execute(items: Sequence[WorkItem], store: RunStore, runner: Runner, progress: ProgressFn | None,
             results: dict[int, SourceResult], files: Sequence[Path]) -> None:
    """Fill `results` (by item index): inputs an earlier run finished, then the runner's."""
    if progress:
        progress("start", {"files": files})
    for item in items:
        istore = store.item(item)
        done = istore.done()
        if done is not None and not istore.holds(input_identity(item.source)):
            done = None  # changed since: process_item redoes it (hashed only if done)
        if done is not None:
            results[item.index] = replace(SourceResult.from_dict(done[0]), reused=True)
            if progress:
                progress("done", {"result": results[item.index], "resumed": True})
    pending = [it for it in items if it.index not in results]
    for item, res in runner.run(pending, store, progress):
        results[item.index] = res
        if progress:
            progress("done", {"result": res, "streamed": runner.name == "serial"})


def _publish(paths: TimelinePaths, items: Sequence[WorkItem], store: RunStore, meta: dict[str, Any],
             results: dict[int, SourceResult], summary: RunSummary, seconds: float,
             partial: bool = False, people: PeopleJob | None = None,
             persons: tuple[list, dict] | None = None) -> Path:
    """Write the timeline (or `.partial` timeline) from the stores, in input order, with
    each row's person (`persons` as _persons made them, else made here)."""
    final = (paths.partial if partial else paths).timeline
    if partial:  # inputs finished in their store just before the interrupt count too
        results = results | {it.index: SourceResult.from_dict(d[0]) for it in items
                             if it.index not in results and (d := store.item(it).done())}
    done = [results[it.index] for it in items if it.index in results]
    # per input: the inputs table, never the footer (208 bytes an input; thrift's limit)
    meta = meta | {"files": len(items), "frames": sum(r.frames for r in done),
                   "faces": sum(r.faces for r in done), "seconds": round(seconds, 3),
                   "resumed_inputs": sum(r.resumed_from is not None for r in done)}
    if partial:
        meta["interrupted"] = "the run was stopped; finished rows only (use --resume)"
    lost = [it.source for it in items if not partial and not store.item(it).complete()]
    if lost:
        raise OutputError(f"the run's folder {store.dir} lost the results of {lost[0]} "
                          f"(removed during the run?); run again")
    parts = [store.item(it).partial_parts() if partial else store.item(it).finished_parts()
             for it in items]
    try:
        persons, record = persons or _persons(items, store, parts, people, final=not partial)
        if people is not None:
            meta = meta | {"people": (meta.get("people") or {}) | record}
        with TimelineSink(final, meta, labels=meta["labels"], partial=False,
                          inputs=[r.to_dict() for r in done]) as sink:
            for item, item_parts, rows in zip(items, parts, persons):
                start = 0
                for part in item_parts:
                    table = _with_source(read_part(part), item.source)
                    if rows is not None:
                        table = _with_person(table, rows[start:start + table.num_rows])
                        start += table.num_rows
                    sink.write_table(table)
                res = results.get(item.index)
                if res is not None and res.error:
                    sink.add_error(res.source, res.error, res.frames, res.traceback)
            for folder, reason in summary.unreadable:
                sink.add_error(folder, f"folder not read: {reason}", 0)
    except OSError as e:
        raise OutputError(f"cannot write {final}: {e.strerror or e}; the finished work is kept "
                          f"in {store.dir}: fix this and rerun with --resume") from e
    if not partial and store.published_partial():
        _remove_timeline(paths.partial)
    return final


def _persons(items: Sequence[WorkItem], store: RunStore, parts: Sequence[list[Path]],
             people: PeopleJob | None, final: bool) -> tuple[list, dict]:
    """Each input's row persons (r,) in its `parts`' order (None each with people off), and
    the metadata's record of them (PeopleJob.persons)."""
    if people is None:
        return [None] * len(items), {}
    return people.persons(parts, [store.item(it).embeddings(p) for it, p in zip(items, parts)],
                          [path_text(it.source) for it in items], final=final)


def _with_source(table, source: Path):
    """Rows as this run names their input (a resumed run may spell the path differently)."""
    import pyarrow as pa

    i = table.schema.get_field_index("source")
    return table.set_column(i, "source", pa.array([path_text(source)] * table.num_rows,
                                                  pa.string()))


def _with_person(table, persons):
    """Rows with their person (persons (r,) str or None)."""
    import pyarrow as pa

    i = table.schema.get_field_index("person")
    return table.set_column(i, "person", pa.array(list(persons), pa.string()))


def _remove_timeline(paths: TimelinePaths) -> None:
    """A superseded `.partial` timeline and its sidecars (the complete one now holds them);
    only ever one this run, or the run it resumed, published."""
    for p in paths.published:
        p.unlink(missing_ok=True)


def _as_dataframe(summary: RunSummary):
    df = read_timeline(summary.out)  # face and track as nullable integers, as everywhere
    df.attrs["errors"] = [{"source": str(r.source), "error": r.error, "traceback": r.traceback}
                         for r in summary.errors]
    summary.tmpdir.cleanup()
    return df
