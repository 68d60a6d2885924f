"""Every error emobatch raises on purpose, in one place.

A run turns `InputError` into an error row for that input and goes on; the CLI maps the
others to its exit codes: `UsageError` (and `LimitError`), `WeightsError` and
`BackendUnavailable` exit 2 (nothing was processed), `OutputError` exits 3 (finished work is
kept for --resume).
Anything else is a bug: an input it happens on gets an error row with the traceback.
"""
from __future__ import annotations


class InputError(Exception):
    """A bad input file; the message is a clear, user-facing reason.

    E.g. 'zero-byte file', 'not a decodable image: ...', 'unsupported file type
    ".txt" (...)', 'truncated/corrupt video: decoded 12 frames, then: ...',
    'permission denied'.
    """


class OutputError(Exception):
    """An output could not be written (disk full, folder removed or read-only, ...) or the
    Dask scheduler running it was lost: the run stops, with what it finished kept where the
    message says."""


class UsageError(ValueError):
    """A problem with the command itself (settings, outputs, resume, device): nothing was
    processed."""


class LimitError(UsageError):
    """The process's limits (an address-space limit: ulimit -v, prlimit --as) are too low
    for emobatch's libraries and networks to start: nothing was processed."""


class WeightsError(RuntimeError):
    """Weights missing, corrupt, or not matching their recorded sha256."""


class BackendUnavailable(RuntimeError):
    """The backend cannot run these weights on this device."""


class ReportWarning(UserWarning):
    """The report was written, but without something asked for (e.g. `--annotate DIR`
    holds none of the timeline's annotated videos); the CLI prints it on stderr."""


class PeopleWarning(UserWarning):
    """A gallery photo (or person) that is not used: unreadable, no face, several faces;
    the run goes on without it, and the CLI prints it on stderr."""
