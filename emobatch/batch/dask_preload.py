"""Opt-in set-up of a Dask worker for emobatch's tasks:

    dask worker --preload emobatch.batch.dask_preload tcp://scheduler:8786

applies emobatch's process-wide tuning (`emobatch.batch.process_tuning.configure_process`: malloc
settings that keep long videos' memory flat, Pillow's pixel limit raised to emobatch's)
when the worker starts. Tasks never change their worker's process settings themselves, as
the worker may be shared with other work; without the preload they run with its defaults.
"""
from __future__ import annotations

from typing import Any

from .process_tuning import configure_process


def dask_setup(worker: Any = None) -> None:
    """Dask's preload hook, called once in the worker's process before it takes tasks."""
    configure_process()
