"""emobatch's process-wide tuning, for a process it owns: the CLI's, its worker processes and
a Dask worker started with `--preload emobatch.batch.dask_preload`; and the check that an
address-space limit leaves room to start (`check_address_space`).

Under a low `ulimit -v` / `prlimit --as` the libraries fail each in its own way: a shared
object that cannot be mapped (ImportError), a thread that cannot start (OpenVINO's and
pyarrow's RuntimeErrors), an abort, or a BLAS that spins forever while loading. So where
such a limit is set, a child process under the same limit first loads everything and runs
the networks once; `resource_failure` names what a run then still meets.
"""
from __future__ import annotations

import errno
import os
import pickle
import resource
import subprocess
import sys
from typing import TYPE_CHECKING

from ..errors import LimitError
from ..media.images import raise_pillow_limit
from ..memory import limit_heap_growth

if TYPE_CHECKING:
    from ..config import Settings

PROBE_SECONDS = 120  # the child's loading takes a few seconds; a library that hangs, forever
# what the C++ and system libraries say when memory, address space or threads run out
RESOURCE_SIGNS = ("failed to map segment", "Cannot allocate memory", "std::bad_alloc",
                  "Resource temporarily unavailable", "Failed to launch worker thread",
                  "can't start new thread")


def configure_process() -> None:
    """The malloc settings of emobatch.memory, and Pillow's decompression-bomb limit no
    stricter than ours (emobatch.media.images.raise_pillow_limit). Never done on import or
    by a library call: an application using emobatch keeps its own process settings."""
    limit_heap_growth()
    raise_pillow_limit()


def exit_if_orphaned(parent: int) -> None:
    """In a worker process: exit at once if its run (pid `parent`) died (SIGKILL), so it
    never goes on writing into what a resumed run now owns."""
    if os.getppid() != parent:
        os._exit(1)


def address_space_limit() -> int | None:
    """The soft RLIMIT_AS in bytes, None where there is none."""
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def check_address_space(settings: Settings) -> None:
    """Where an address-space limit is set, start a run's libraries and networks (for
    `settings`) in a child process under it; LimitError if that fails or hangs. No limit:
    nothing is done."""
    limit = address_space_limit()
    if limit is None:
        return
    why = _probe(settings)
    if why is not None:
        raise LimitError(f"the address-space limit (ulimit -v, prlimit --as) of "
                         f"{limit / 1e9:.1f} GB is too low for emobatch's libraries and "
                         f"networks ({why}): raise it (8 GB is enough on a CPU), or remove it")


def _probe(settings: Settings) -> str | None:
    """None if a child process loaded and ran the pipeline, else what went wrong."""
    try:
        r = subprocess.run([sys.executable, "-m", __name__], input=pickle.dumps(settings),
                           capture_output=True, timeout=PROBE_SECONDS)
    except subprocess.TimeoutExpired:
        return f"a test start did not finish in {PROBE_SECONDS} s"
    if r.returncode == 0:
        return None
    lines = r.stderr.decode(errors="replace").strip().splitlines()
    last = lines[-1].strip() if lines else f"exit status {r.returncode}"
    return f"a test start failed: {last[:200]}"


def resource_failure(e: BaseException) -> str | None:
    """One line for an error that says file descriptors, memory, address space or threads
    ran out (raised by a library under a limit), else None."""
    if isinstance(e, OSError) and e.errno in (errno.EMFILE, errno.ENFILE):
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return (f"too many open files (the limit, ulimit -n, is {soft}): raise it or use "
                f"fewer --workers")
    if not isinstance(e, MemoryError) and not any(s in str(e) for s in RESOURCE_SIGNS):
        return None
    limit = address_space_limit()
    where = (f"the address-space limit, ulimit -v, is {limit / 1e9:.1f} GB" if limit
             else "the machine's memory or a limit")
    return f"out of memory or threads ({where}): raise the limit or use fewer --workers"


def _start_once() -> None:
    """The probe's child: the pipeline built for the run's settings, run on one photo."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..pipeline import FacePipeline
    from ..types import Frame

    configure_process()
    pipe = FacePipeline(pickle.loads(sys.stdin.buffer.read()))
    pipe.process(Frame(np.full((160, 160, 3), 128, np.uint8), source=None))
    pq.write_table(pa.table({"x": np.arange(4)}), pa.BufferOutputStream())


if __name__ == "__main__":
    _start_once()
