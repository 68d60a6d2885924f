"""Where the inputs of a run are processed: here, in worker processes, or on a Dask cluster.

Every runner executes the same unit of work, `one_input.process_item` on one `WorkItem`, and
yields (item, result) as inputs finish, in any order; `driver.run_files` publishes the
rows in input order from the run's store, so the timeline is the same whichever runs it.
Once the person ids are made, the same runner draws the annotated outputs
(`annotated.annotate_input` on one `AnnotateJob`).

- `SerialRunner`: this process, one input after another (frame-level progress).
- `ProcessRunner`: `--workers N` local processes, each with cores // N threads; they write
  into the run's store themselves, so checkpoints inside long videos work as here.
- `DaskRunner`: `--scheduler ADDRESS`, tasks on a Dask distributed cluster; a task returns
  its rows to this client, which stores them (resume works per input); annotated outputs are
  written by the workers, so --annotate must be a path they share. A task whose worker dies
  is rerun elsewhere by Dask with the same result; a lost scheduler stops the run with an
  OutputError (exit 3), the finished inputs kept for --resume.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import secrets
import tempfile
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from queue import Queue
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence

import pyarrow as pa

from ..errors import OutputError
from ..faces.device import gpu_devices
from .process_tuning import configure_process, exit_if_orphaned
from ..pipeline import FacePipeline
from ..plan import RunPlan
from .annotated import (AnnotateJob, Annotated, Annotator, annotate_in_worker, annotate_input,
                        init_annotate_worker)
from .one_input import ProgressFn, SourceResult, process_item
from .people import EMB_SCHEMA
from .store import ItemStore, RunStore, WorkItem, read_part

if TYPE_CHECKING:
    import torch
from ..errors import UsageError


class Runner(Annotator, Protocol):
    name: str

    def run(self, items: Sequence[WorkItem], store: RunStore,
            progress: ProgressFn | None) -> Iterator[tuple[WorkItem, SourceResult]]:
        """Process `items` into `store`; yield each with its result as it finishes."""
        ...

    def close(self) -> None:
        """Let go of what the runner holds (a Dask client it opened)."""
        ...


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def auto_workers(n_items: int, cores: int | None = None) -> int:
    """Two-thread workers: on 2 cores one 2-thread process runs within a few % of two
    1-thread ones, and the gain of more processes is in many-core machines."""
    return max(1, min(n_items, (cores or available_cores()) // 2))


class SerialRunner:
    name = "serial"

    def __init__(self, pipe: FacePipeline) -> None:
        self.pipe = pipe

    def run(self, items: Sequence[WorkItem], store: RunStore,
            progress: ProgressFn | None) -> Iterator[tuple[WorkItem, SourceResult]]:
        for item in items:
            yield item, process_item(self.pipe, item, store.item(item), progress)

    def annotate(self, jobs: Sequence[AnnotateJob], store: RunStore) -> Iterator[Annotated]:
        for job in jobs:
            yield job, *annotate_input(job)

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------ worker processes

_worker: dict[str, Any] = {}


def _init_worker(plan: RunPlan, threads: int, parent: int,
                 devices: "Queue[torch.device] | None" = None) -> None:
    """A worker process's set-up; `devices`: a queue of GPUs, from which it takes its own."""
    import cv2
    import torch

    configure_process()
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    if devices is not None:
        device = devices.get(timeout=60)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        plan = dataclasses.replace(plan, device=device)
    _worker.update(pipe=FacePipeline(plan), parent=parent)


def _orphan_check(event: str, info: dict) -> None:
    exit_if_orphaned(_worker["parent"])


def _worker_item(item: WorkItem, store_dir: str) -> SourceResult:
    _orphan_check("start", {})
    return process_item(_worker["pipe"], item, ItemStore(Path(store_dir)), _orphan_check)


class ProcessRunner:
    name = "processes"

    def __init__(self, plan: RunPlan, workers: int, threads: int | None = None,
                 devices: Sequence[torch.device] = ()) -> None:
        """devices: one per worker (its GPU), else every worker runs on plan.device."""
        self.plan, self.workers, self.devices = plan, workers, list(devices)
        self.threads = threads or max(1, available_cores() // workers)

    def run(self, items: Sequence[WorkItem], store: RunStore,
            progress: ProgressFn | None) -> Iterator[tuple[WorkItem, SourceResult]]:
        if not items:
            return
        ctx = get_context("spawn")
        devices = None
        if self.devices:
            devices = ctx.Queue()
            for d in self.devices:
                devices.put(d)
        pool = ProcessPoolExecutor(min(self.workers, len(items)), mp_context=ctx,
                                   initializer=_init_worker,
                                   initargs=(self.plan, self.threads, os.getpid(), devices))
        yield from _finished(pool, _worker_item,
                             [(item, (item, str(store.item(item).dir))) for item in items])

    def annotate(self, jobs: Sequence[AnnotateJob], store: RunStore) -> Iterator[Annotated]:
        if not jobs:
            return
        # workers of their own, which load no model (the run's are gone)
        pool = ProcessPoolExecutor(min(self.workers, len(jobs)), mp_context=get_context("spawn"),
                                   initializer=init_annotate_worker,
                                   initargs=(self.threads, os.getpid()))
        for job, drawn in _finished(pool, annotate_in_worker, [(job, (job,)) for job in jobs]):
            yield job, *drawn

    def close(self) -> None:
        pass


def _finished(pool: ProcessPoolExecutor, fn: Callable[..., Any],
              calls: Sequence[tuple[Any, tuple]]) -> Iterator[tuple[Any, Any]]:
    """(key, fn(*args)) run in the pool for each (key, args) of `calls`, as each finishes;
    the pool is shut down after the last."""
    try:
        futures = {pool.submit(fn, *args): key for key, args in calls}
        for fut in as_completed(futures):
            try:
                res = fut.result()
            except BrokenProcessPool:
                raise OutputError("a worker process died (killed by the system? out of "
                                  "memory?); the run stopped") from None
            yield futures[fut], res
    except BaseException:
        # Ctrl-C / SIGTERM / an output error: stop the workers now; what they finished
        # is in the store
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


# ------------------------------------------------------------------------------------ Dask

_dask_pipes: dict[tuple[str, int], FacePipeline] = {}
_dask_lock = threading.Lock()


def _dask_pipeline(plan: RunPlan) -> FacePipeline:
    """One pipeline per worker thread and plan, built on first use (worker set-up).
    Process-wide tuning is the worker's own (emobatch.batch.dask_preload), never a task's."""
    key = (repr(plan), threading.get_ident())
    with _dask_lock:
        if key not in _dask_pipes:
            _dask_pipes[key] = FacePipeline(plan)
        return _dask_pipes[key]


def dask_item(item: WorkItem, plan: RunPlan) -> tuple[dict[str, Any], pa.Table, pa.Table]:
    """The Dask task: one input processed on a worker as `plan` says; returns (result, rows,
    the face embeddings its persons are made from at publish)."""
    pipe = _dask_pipeline(plan)
    with tempfile.TemporaryDirectory(prefix="emobatch-", dir=_worker_dir()) as d:
        store = ItemStore(Path(d))
        res = process_item(pipe, item, store)
        parts = store.finished_parts()
        table = pa.concat_tables([read_part(p) for p in parts])
        embeddings = pa.concat_tables([EMB_SCHEMA.empty_table()] + [
            read_part(p) for p in store.embeddings(parts)])
    return res.to_dict(), table, embeddings


def _worker_dir() -> str | None:
    """Where a task keeps its input's store: its worker's local directory, which Dask removes
    when the worker closes and purges after a killed one when the next worker starts there
    (a folder in /tmp would outlive a worker killed mid-task); None outside a worker."""
    from distributed import get_worker

    try:
        return get_worker().local_directory
    except ValueError:  # not in a worker: the system's temp folder
        return None


# how long the client waits for a scheduler: a reachable one answers in well under a second
CONNECT_TIMEOUT = "5s"


class DaskRunner:
    name = "dask"

    def __init__(self, plan: RunPlan, scheduler: Any) -> None:
        try:
            import distributed
        except ImportError:
            raise UsageError("--scheduler needs Dask: pip install 'emobatch[dask]'") from None
        self.plan = plan
        try:
            self.client = (scheduler if isinstance(scheduler, distributed.Client)
                           else distributed.Client(scheduler, timeout=CONNECT_TIMEOUT))
        except (OSError, TimeoutError, ValueError) as e:  # ValueError: a malformed address
            raise UsageError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
        self._own = self.client is not scheduler
        self._lost = False

    def run(self, items: Sequence[WorkItem], store: RunStore,
            progress: ProgressFn | None) -> Iterator[tuple[WorkItem, SourceResult]]:
        from distributed import as_completed as dask_completed

        run_id = secrets.token_hex(4)  # two runs sharing a cluster never share a task
        # workers start elsewhere: they get absolute paths (rows keep the given ones)
        futures = {self.client.submit(dask_item, _absolute(item), self.plan, pure=False,
                                      key=f"emobatch-{run_id}-{item.index}"): item
                   for item in items}
        for fut in dask_completed(list(futures)):
            item = futures[fut]
            result, table, embeddings = self._result(fut, store)
            istore = store.item(item)
            istore.drop_after(-1)
            istore.write_chunk(0, table, None, embeddings)
            result["source"] = str(item.source)
            istore.finish(result, 1)
            yield item, SourceResult.from_dict(result)

    def annotate(self, jobs: Sequence[AnnotateJob], store: RunStore) -> Iterator[Annotated]:
        from distributed import as_completed as dask_completed

        run_id, waiting, futures = secrets.token_hex(4), iter(jobs), {}
        done = dask_completed()

        def submit(job: AnnotateJob) -> None:
            # a Dask worker sees no store: the task carries its rows, so only a few tasks
            # are out at a time (the client's memory stays bounded)
            task = dataclasses.replace(job, item=_absolute(job.item),
                                       parts=[read_part(p) for p in job.parts])
            fut = self.client.submit(annotate_input, task, pure=False,
                                     key=f"emobatch-annotate-{run_id}-{job.item.index}")
            futures[fut] = job
            done.add(fut)

        for job in itertools.islice(waiting, 2 * max(1, sum(self.client.nthreads().values()))):
            submit(job)
        for fut in done:
            job = futures.pop(fut)
            path, error = self._result(fut, store)
            for following in itertools.islice(waiting, 1):
                submit(following)
            yield job, path and job.item.annotate, error

    def close(self) -> None:
        """Close our client (one given to the runner stays open); after a lost scheduler
        without Dask's log of its cancelled reconnection (a traceback), as the run's
        one-line message says it all."""
        import logging

        if not self._own:
            return
        log = logging.getLogger("distributed.client")
        level = log.level
        if self._lost:
            log.setLevel(logging.CRITICAL)
        try:
            self.client.close()
        finally:
            log.setLevel(level)


    def _result(self, fut: Any, store: RunStore) -> Any:
        """A task's return value; OutputError (exit 3) if the scheduler was lost: its tasks
        are cancelled, and what finished is in the store for --resume."""
        from concurrent.futures import CancelledError

        try:
            return fut.result()
        except (CancelledError, OSError, TimeoutError) as e:  # CommClosedError is an OSError
            why = (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(".")
            self._lost = True
            raise OutputError(f"lost the Dask scheduler at {self.client.scheduler.address} "
                              f"({why}); finished inputs are kept in {store.dir}: rerun with "
                              f"--resume") from None


def _absolute(item: WorkItem) -> WorkItem:
    return dataclasses.replace(item, source=item.source.absolute(),
                               annotate=item.annotate and item.annotate.absolute())


def make_runner(plan: RunPlan, workers: int | str = 1, scheduler: Any = None) -> Runner:
    """The runner a run asks for: Dask if `scheduler`, else processes if workers > 1, else
    this process (its pipeline built here)."""
    if scheduler is not None:
        return DaskRunner(plan, scheduler)
    gpus, on_gpu = gpu_devices(plan.device), plan.device.type != "cpu"
    if workers == "auto":
        workers = max(1, len(gpus)) if on_gpu else auto_workers(10**9)
    if int(workers) > 1 and on_gpu:
        # one process drives a GPU: several sharing one ran slower than one alone
        # (docs/experiments.md)
        if not gpus:  # an accelerator other than CUDA
            raise UsageError(f"--workers {workers} with --device {plan.device}: one process "
                             "drives it; use --workers 1")
        if int(workers) > len(gpus):
            raise UsageError(f"--workers {workers} with --device {plan.device}: one process "
                             f"per GPU, and {len(gpus)} GPU(s) can be used here; use "
                             f"--workers {len(gpus)} (or auto)")
        return ProcessRunner(plan, int(workers), devices=gpus[:int(workers)])
    if int(workers) > 1:
        return ProcessRunner(plan, int(workers))
    return SerialRunner(FacePipeline(plan))
