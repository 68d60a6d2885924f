"""Command line: `emobatch run INPUTS... --out results.parquet [--annotate DIR]`."""
from __future__ import annotations

import argparse
import signal
import sys
import warnings
from pathlib import Path
from typing import Sequence

from rich.table import Table

from ._version import __version__
from .config import (AMP_MODES, BACKEND_NAMES, DETECTOR_BACKEND_NAMES, DEVICES, PEOPLE_SCOPES,
                     QUALITY_PRESETS, TTA_MODES, Settings)
from .console import RichProgress, console, say
from .errors import (BackendUnavailable, OutputError, PeopleWarning, ReportWarning,
                     UsageError, WeightsError)
from .media.filetypes import check_inputs_exist, path_text


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="emobatch", description="Per-frame facial-emotion "
                                "timelines from folders of photos and videos.")
    p.add_argument("--version", action="version", version=f"emobatch {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="process images and videos into a timeline")
    r.set_defaults(parser=r)  # a mistake in its options prints its usage, not the top one
    d = Settings.default
    r.add_argument("inputs", nargs="+", type=Path, help="files and/or folders (walked recursively)")
    r.add_argument("--out", type=Path, required=True, help="results.parquet or results.csv")
    r.add_argument("--annotate", type=Path, default=None, metavar="DIR",
                   help="write annotated MP4s / images here (names mirror the inputs)")
    r.add_argument("--blur-faces", action="store_true",
                   help="blur the faces in annotated outputs (for sharing); the --report then "
                        "shows no face thumbnails")
    r.add_argument("--report", type=Path, default=None, metavar="HTML",
                   help="also write the offline HTML report (see emobatch report)")
    r.add_argument("--device", default=d("device"), choices=list(DEVICES),
                   help="auto: CUDA if present, else cpu (default: %(default)s)")
    r.add_argument("--backend", default=d("backend"), choices=list(BACKEND_NAMES),
                   help="how the classifier runs: int8 (x86 CPUs; auto's choice there when the "
                        "weights carry a calibration), torch (eager; bf16 where the CPU has "
                        "it, AMP on CUDA)")
    r.add_argument("--detector-backend", default=d("detector_backend"),
                   choices=list(DETECTOR_BACKEND_NAMES),
                   help="how MTCNN's networks run: openvino (auto's choice on a CPU when "
                        "emobatch[openvino] is installed) or torch")
    r.add_argument("--amp", default=d("amp"), choices=list(AMP_MODES),
                   help="bf16 for the torch classifier and OpenVINO's nets (auto: where the "
                        "CPU runs it natively; AMP on CUDA); off: fp32")
    r.add_argument("--batch-size", type=int, default=d("batch_size"),
                   help="faces per classifier batch (default: %(default)s)")
    r.add_argument("--min-face-size", type=int, default=d("min_face_size"),
                   help="smallest face in pixels (default: %(default)s)")
    r.add_argument("--thresholds", type=float, nargs=3, default=d("thresholds"),
                   metavar=("P", "R", "O"), help="MTCNN stage thresholds, each in [0, 1]")
    r.add_argument("--min-score", type=float, default=d("min_score"),
                   help="drop faces scored below this (in [0, 1])")
    r.add_argument("--every", type=int, default=d("every"), metavar="N",
                   help="every Nth video frame (default: %(default)s)")
    r.add_argument("--weights", type=Path, default=None, help="a weights .pt (default: shipped)")
    r.add_argument("--tta", choices=list(TTA_MODES), default=None,
                   help="test-time augmentation: flip 2 views, zoom 4, tencrop 10 (default: "
                        "as the weights' config says for photos, none for videos, where "
                        "per-track smoothing averages frames instead)")
    r.add_argument("--quality", choices=list(QUALITY_PRESETS), default=d("quality"),
                   help="video speed/fidelity preset (see README); exhaustive = full MTCNN "
                        "on every full-resolution frame")
    r.add_argument("--detect-every", type=int, default=None, metavar="N",
                   help="full detection every N processed video frames, O-Net tracking between")
    r.add_argument("--detect-scale", type=float, default=None, metavar="S",
                   help="run full detection on the frame scaled by S (0 < S <= 1)")
    r.add_argument("--full-res-every", type=int, default=None, metavar="N",
                   help="every Nth full detection at full resolution, for faces too small for "
                        "the scaled one (0 = never)")
    r.add_argument("--classify-every", type=int, default=None, metavar="N",
                   help="classify a tracked face every N processed video frames, its track "
                        "carrying the last result in between (the timeline's classified column); "
                        "0 = auto: 2 on CPUs without AVX-512, else 1, also on CUDA (default: "
                        "the preset's: auto for balanced, 2 for fast; 1 with --no-track)")
    r.add_argument("--no-track", action="store_true", help="no track ids, no smoothing")
    r.add_argument("--smooth", type=float, default=d("smooth_tau"), metavar="TAU",
                   help="per-track smoothing time constant in seconds (0 = off; raw "
                        "probabilities are always kept in the *_raw columns; default: "
                        "%(default)s)")
    r.add_argument("--people", default=d("people"), choices=list(PEOPLE_SCOPES),
                   help="person ids: within each input (video), shared by all inputs "
                        "(across), or none (off) (default: %(default)s)")
    r.add_argument("--people-threshold", type=float, default=d("people_threshold"),
                   metavar="SIM", help="least average cosine similarity of one person's "
                                       "tracks (default: %(default)s)")
    r.add_argument("--people-gallery", type=Path, default=None, metavar="DIR",
                   help="reference photos, one person each (alice.jpg, or alice/ with "
                        "several): matching persons get that name")
    r.add_argument("--save-embeddings", type=Path, default=None, metavar="FILE",
                   help="also write the face embeddings (biometric data) to this Parquet file")
    r.add_argument("--resume", action="store_true",
                   help="continue the unfinished run at --out (same inputs and settings)")
    r.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out timeline and annotated outputs (else refused)")
    r.add_argument("--checkpoint-every", type=float, default=d("checkpoint_every"), metavar="SEC",
                   help="save a long video's progress every SEC seconds of video (default: "
                        "%(default)s)")
    r.add_argument("--workers", default="1", metavar="N",
                   help="worker processes (an integer, or auto: one per 2 cores; on CUDA, "
                        "one per GPU)")
    r.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on a Dask cluster (tcp://host:8786); needs emobatch[dask]")
    r.add_argument("--quiet", action="store_true", help="no progress display")
    r.add_argument("--verbose", action="store_true",
                   help="print the traceback of each input that failed unexpectedly (a bug)")
    add_report_parser(sub)
    return p


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    """`emobatch report RESULTS [--out report.html]`: the offline HTML report."""
    r = sub.add_parser("report", help="write an offline HTML report of a timeline")
    r.set_defaults(parser=r)
    r.add_argument("results", type=Path, help="a timeline written by emobatch run (.parquet/.csv)")
    r.add_argument("--out", type=Path, default=None,
                   help="the HTML file (default: <results stem>.report.html beside it)")
    r.add_argument("--overwrite", action="store_true",
                   help="replace an existing file that is not an earlier emobatch report")
    r.add_argument("--annotate", type=Path, default=None, metavar="DIR",
                   help="the run's --annotate folder: its MP4s play in the page")
    r.add_argument("--no-thumbnails", action="store_true",
                   help="no face pictures in the page (privacy)")
    r.add_argument("--raw", action="store_true",
                   help="analyse the per-frame *_raw probabilities instead of the smoothed")
    r.add_argument("--min-episode", type=float, default=0.5, metavar="SEC",
                   help="shorter emotion spans merge into their neighbour")


def check_timeline(path: Path) -> None:
    """UsageError unless `path` is a readable timeline file (its suffix and first columns)."""
    from .timeline import timeline_writer
    from .types import EMOTIONS

    if not path.is_file():
        raise UsageError(f"no such timeline: {path}")
    try:
        names = timeline_writer(path).columns(path)
    except (OSError, ValueError) as e:  # pyarrow's errors are these too
        raise UsageError(f"cannot read the timeline {path}: {e}") from None
    # what the report reads: a table with only some of these is not a timeline
    missing = [c for c in ("source", "frame", "t_sec", "face", "track", "x1", "y1", "x2", "y2",
                           "det_score", *EMOTIONS) if c not in names]
    if missing:
        raise UsageError(f"{path} is not an emobatch timeline (no {', '.join(missing)} column)")


def cmd_report(a: argparse.Namespace) -> int:
    from .batch.outputs import check_report
    from .report import report_path, write_report
    from .timeline import TimelinePaths

    check_timeline(a.results)
    check_report(report_path(a.results, a.out), TimelinePaths(a.results).written, a.overwrite)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ReportWarning)
        out = write_report(a.results, a.out, annotate_dir=a.annotate,
                           thumbnails=not a.no_thumbnails, raw=a.raw, min_episode=a.min_episode)
    _say_warnings(caught)
    say(f"report: {path_text(out)}")
    return 0


def _say_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Our warnings as one line each on stderr; anyone else's as Python shows them."""
    for w in caught:
        if issubclass(w.category, (ReportWarning, PeopleWarning)):
            say(f"emobatch: warning: {w.message}")
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def settings_from_args(a: argparse.Namespace) -> Settings:
    """Settings from the parsed arguments; UsageError (exit 2) for a bad value."""
    return Settings(device=a.device, batch_size=a.batch_size, min_face_size=a.min_face_size,
                    thresholds=tuple(a.thresholds), min_score=a.min_score, every=a.every,
                    weights=a.weights, tta=a.tta, quality=a.quality,
                    detect_every=a.detect_every, detect_scale=a.detect_scale,
                    full_res_every=a.full_res_every, classify_every=a.classify_every,
                    track=not a.no_track,
                    smooth_tau=a.smooth, checkpoint_every=a.checkpoint_every,
                    blur_faces=a.blur_faces, backend=a.backend, amp=a.amp,
                    detector_backend=a.detector_backend, people=a.people,
                    people_threshold=a.people_threshold, people_gallery=a.people_gallery,
                    save_embeddings=a.save_embeddings)


def workers_from_args(value: str) -> int | str:
    """--workers as run_files takes it; UsageError (exit 2) for a bad value."""
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise UsageError(f"--workers must be an integer >= 1 or auto, not {value!r}")
    return n


def print_summary(summary, verbose: bool = False) -> None:
    """The run's table, then plain lines: skipped files, renamed outputs, failed inputs
    (with `verbose`, each unexpected failure's traceback)."""
    t = Table(title="emobatch summary")
    for col in ("files", "frames", "faces", "errors", "time", "frames/s"):
        t.add_column(col, justify="right")
    n_errors = len(summary.errors) + len(summary.unreadable)
    t.add_row(str(len(summary.results)), str(summary.frames), str(summary.faces),
              str(n_errors), f"{summary.seconds:.1f} s",
              f"{summary.frames / max(summary.seconds, 1e-9):.1f}")
    console.print(t)
    if summary.skipped:
        say("skipped (not an image or video suffix): " + ", ".join(
            f"{n} {ext}" for ext, n in summary.skipped.items()))
    for src, dst in summary.renamed.items():
        say(f"annotated name taken: {path_text(src)} -> {path_text(dst)}")
    reused = sum(r.reused for r in summary.results)
    continued = sum(r.resumed_from is not None and not r.reused for r in summary.results)
    redone = sum(r.restarted or r.changed for r in summary.results)
    if reused or continued or redone:
        say(f"resumed: {reused} input(s) finished before, kept; {continued} video(s) "
            f"continued from a checkpoint; {redone} redone from the start")
    for r in summary.results:
        if r.restarted:
            say(f"stopped before its first checkpoint, redone from the start: "
                f"{path_text(r.source)}")
        if r.changed:
            say(f"changed since the interrupted run, redone: {path_text(r.source)}")
    if n_errors:
        say(f"{n_errors} input(s) failed:", "bold red")
        for r in summary.errors:
            say(f"  {path_text(r.source)}: {path_text(r.error)} (frames done: {r.frames})")
            if verbose and r.traceback:
                say(r.traceback.rstrip())
        for folder, reason in summary.unreadable:
            say(f"  {path_text(folder)}: folder not read: {reason}")
        if not verbose and any(r.traceback for r in summary.errors):
            say("unexpected failures (bugs): their tracebacks are in the errors table's "
                "traceback column, and with --verbose here")


class Terminated(KeyboardInterrupt):
    """SIGTERM (timeout, docker stop, Slurm, Kubernetes): stop like Ctrl-C."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def cmd_run(a: argparse.Namespace) -> int:
    # a bad option or input is refused before torch, PyAV and OpenCV load (seconds)
    settings = settings_from_args(a)
    workers = workers_from_args(a.workers)
    check_inputs_exist(a.inputs)
    from .batch.process_tuning import check_address_space

    check_address_space(settings)  # before pyarrow too: this process may not even load it
    from .timeline import TimelinePaths, timeline_writer  # pyarrow, not torch, PyAV, OpenCV

    try:
        timeline_writer(a.out)
    except ValueError as e:
        raise UsageError(str(e)) from None
    from .batch.driver import run_files

    paths = TimelinePaths(a.out)
    prog = RichProgress(a.quiet, settings.every)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PeopleWarning)
            try:
                summary = run_files(a.inputs, paths, a.annotate, settings, prog,
                                    resume=a.resume, workers=workers, scheduler=a.scheduler,
                                    report=a.report, overwrite=a.overwrite)
            finally:
                _say_warnings([w for w in caught if issubclass(w.category, PeopleWarning)])
    except KeyboardInterrupt as e:
        prog.stop()
        how = "terminated" if isinstance(e, Terminated) else "interrupted"
        complete = getattr(e, "timeline_complete", None)
        partial = paths.partial.timeline
        rows = f"finished rows in {partial}" if partial.is_file() else "no partial timeline"
        say(f"{how} while writing the report: the timeline {path_text(complete)} is complete; "
            f"write the report with: emobatch report {path_text(complete)}" if complete else
            f"{how}: {rows}; continue with --resume (progress kept in "
            f"{path_text(paths.run_dir)})", "yellow")
        return 143 if isinstance(e, Terminated) else 130
    except Exception as e:  # an output, or memory, threads, files run out; else a bug
        prog.stop()
        message = _cannot_finish(e)
        kept = paths.run_dir
        hint = (f"; finished work is kept in {kept}: fix this and rerun with --resume"
                if kept.is_dir() and "--resume" not in message else "")
        say(f"emobatch: {message}{hint}", "red")
        return 3
    finally:
        prog.stop()
    print_summary(summary, a.verbose)
    failed = summary.errors or summary.unreadable
    say(f"timeline: {path_text(summary.out)}"
        + (f"  errors: {path_text(paths.errors)}" if failed else "")
        + (f"  annotated: {path_text(a.annotate)}" if a.annotate else ""))
    if summary.report is not None:
        say(f"report: {path_text(summary.report)}")
    return 1 if failed else 0


def _cannot_finish(e: BaseException) -> str:
    """What stopped a run, in one line: an output's error, or a resource the system ran out
    of (memory, address space, threads, file descriptors: more --workers need more).
    Anything else is a bug and is raised again, with its traceback."""
    from .batch.process_tuning import resource_failure

    if message := resource_failure(e):
        return message
    if isinstance(e, OutputError):
        return str(e)
    raise e


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; its deliberate failures exit 2 (usage, weights, backend: nothing was
    processed) or 3 (an output; finished work kept), one line each. Anything else is a bug
    and propagates with its traceback (exit 1)."""
    from .batch.process_tuning import configure_process

    top = get_parser()
    a, unknown = top.parse_known_args(argv)
    if unknown:
        getattr(a, "parser", top).error(f"unrecognized arguments: {' '.join(unknown)}")
    configure_process()  # process-wide tuning: here, where the process starts
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if a.command == "run":
            return cmd_run(a)
        if a.command == "report":
            return cmd_report(a)
    except (UsageError, WeightsError, BackendUnavailable) as e:
        say(f"emobatch: {e}", "red")
        return 2
    except OutputError as e:  # `run` says where its finished work is kept; this is the rest
        say(f"emobatch: {e}", "red")
        return 3
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 2


if __name__ == "__main__":
    sys.exit(main())
