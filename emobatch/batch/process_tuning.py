"""emobatch's process-wide tuning, for a process it owns: the CLI's, its worker processes and
a Dask worker started with `--preload emobatch.batch.dask_preload`."""
from __future__ import annotations

import os

from ..media.images import raise_pillow_limit
from ..memory import limit_heap_growth


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
