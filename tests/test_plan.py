"""A run resolves its settings once, into a RunPlan that everything downstream reads."""
import dataclasses
import sys
from collections import Counter

import pytest
import torch

from conftest import SAMPLE
from emobatch.config import Settings
from emobatch.faces.detection.runtimes import NetRuntime
from emobatch.pipeline import FacePipeline
from emobatch.plan import RunPlan, resolve_plan

RESOLVERS = ("select_device", "resolve_backend", "net_runtime", "resolve_classify_every",
             "video_info", "read_config")


def count_calls(monkeypatch) -> Counter:
    """Wrap every emobatch module's binding of the RESOLVERS, so a call through any import
    of them is counted."""
    calls: Counter = Counter()
    for name, module in list(sys.modules.items()):
        if not name.startswith("emobatch") or module is None:
            continue
        for fn_name in RESOLVERS:
            fn = getattr(module, fn_name, None)
            if callable(fn) and not hasattr(fn, "_counted"):
                def counted(*a, _fn=fn, _name=fn_name, **kw):
                    calls[_name] += 1
                    return _fn(*a, **kw)
                counted._counted = True
                monkeypatch.setattr(module, fn_name, counted)
    return calls


def test_a_run_resolves_each_value_once(monkeypatch, tmp_path):
    import emobatch.batch.driver  # noqa: F401  (every module of the run's path is loaded)
    import emobatch.batch.runners  # noqa: F401
    import emobatch.pipeline  # noqa: F401

    calls = count_calls(monkeypatch)
    out = emobatch.run([SAMPLE / "astronaut.jpg", SAMPLE / "astronaut_clip.mp4"],
                       out=tmp_path / "r.parquet", device="cpu")
    meta = emobatch.read_timeline(out).attrs["emobatch"]
    assert meta["files"] == 2 and meta["faces"] > 0
    assert calls["select_device"] == 1
    assert calls["resolve_backend"] == 1
    assert calls["resolve_classify_every"] == 1
    assert calls["read_config"] == 1
    # videos' and photos' networks: one resolution each at most
    assert 1 <= calls["net_runtime"] <= 2
    assert calls["video_info"] == 1  # one video, its header read once


def test_the_pipeline_and_metadata_follow_the_plan_not_the_settings():
    plan = resolve_plan(Settings(device="cpu", classify_every=0))
    assert plan.classify_every >= 1 and plan.settings.classify_every == plan.classify_every
    # a plan that differs from what its settings would resolve to: the pipeline does what
    # the plan says (a worker never re-resolves)
    odd = dataclasses.replace(plan, classify_every=7, tta="flip", tta_video="zoom",
                              detector_stills=NetRuntime("torch"))
    pipe = FacePipeline(odd)
    assert pipe.classify_every == 7
    assert pipe.classifier.tta == "flip"
    assert pipe.still_detector.backend == "torch"
    assert pipe.detector.backend == plan.detector.name
    meta = odd.metadata()
    assert (meta["classify_every"], meta["tta"], meta["tta_video"]) == (7, "flip", "zoom")
    assert meta["backend"] == pipe.classifier.backend
    assert meta["detector_backend_stills"] == "torch"


def test_plan_fingerprint_depends_on_what_changes_rows(tmp_path):
    a = resolve_plan(Settings(device="cpu"))
    assert a.fingerprint() == resolve_plan(Settings(device="cpu")).fingerprint()
    assert a.fingerprint() != resolve_plan(Settings(device="cpu", min_score=0.8)).fingerprint()
    assert a.fingerprint() != dataclasses.replace(a, classifier_runtime="x").fingerprint()
    assert a.fingerprint() != a.fingerprint(tmp_path)
    # MTCNN's weights count as the classifier's do (another facenet-pytorch may ship others)
    assert len(a.detector_weights_sha256) == 64
    assert a.fingerprint() != dataclasses.replace(a, detector_weights_sha256="0" * 64).fingerprint()
    assert a.device == torch.device("cpu")  # parsed once, a torch.device from here on
    # the plan is frozen: nothing downstream can change what was resolved
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.device = "cuda"  # type: ignore[misc]
    assert isinstance(a, RunPlan)


def test_more_workers_than_gpus_are_refused_before_anything_is_built(monkeypatch):
    import emobatch.batch.runners as runners
    from emobatch.errors import UsageError

    plan = dataclasses.replace(resolve_plan(Settings(device="cpu")), device=torch.device("cuda"))
    monkeypatch.setattr(runners, "gpu_devices", lambda device: [torch.device("cuda:0")])
    with pytest.raises(UsageError, match="one process per GPU, and 1 GPU"):
        runners.make_runner(plan, 2)


def test_several_gpus_get_one_worker_process_each(monkeypatch):
    """What this machine's GPUs are is patched; which runner, and which GPU each worker
    takes, is the product's."""
    import queue

    import cv2
    import torch

    import emobatch.batch.runners as runners

    gpus = [torch.device("cuda", i) for i in range(3)]
    plan = dataclasses.replace(resolve_plan(Settings(device="cpu")), device=torch.device("cuda"))
    monkeypatch.setattr(runners, "gpu_devices", lambda device: gpus)
    auto = runners.make_runner(plan, "auto")
    assert isinstance(auto, runners.ProcessRunner)
    assert auto.devices == gpus
    assert runners.make_runner(plan, 2).devices == gpus[:2]
    # a worker takes the next GPU off the queue and builds its pipeline there (here: a CPU),
    # without the process-wide tuning a worker process does
    monkeypatch.setattr(runners, "configure_process", lambda: None)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    monkeypatch.setattr(cv2, "setNumThreads", lambda n: None)
    monkeypatch.setattr(runners, "_worker", {})
    q = queue.Queue()
    q.put(torch.device("cpu"))
    cpu_plan = resolve_plan(Settings(device="cpu"))
    runners._init_worker(dataclasses.replace(cpu_plan, device=torch.device("cuda:7")), 1, 0, q)
    assert runners._worker["pipe"].plan.device == torch.device("cpu") and q.empty()


def test_worker_processes_given_devices_give_the_one_process_timeline(tmp_path):
    """The queue of devices through real spawned workers (CPUs standing in for GPUs)."""
    import shutil

    import emobatch
    from emobatch.batch import runners
    from emobatch.batch.store import RunStore, WorkItem
    from emobatch.timeline import TimelinePaths

    for name in ("a.jpg", "b.jpg"):
        shutil.copy(SAMPLE / "astronaut.jpg", tmp_path / name)
    serial = emobatch.run(tmp_path, device="cpu")
    plan = resolve_plan(Settings(device="cpu"))
    items = [WorkItem(i, tmp_path / n, f"k{i}") for i, n in enumerate(("a.jpg", "b.jpg"))]
    store = RunStore(TimelinePaths(tmp_path / "run.parquet"))
    store.open(plan.fingerprint(), False, {})
    runner = runners.ProcessRunner(plan, 2, threads=1, devices=[torch.device("cpu")] * 2)
    results = {item.index: res for item, res in runner.run(items, store, None)}
    store.release()
    assert sorted(results) == [0, 1] and all(r.error is None for r in results.values())
    assert [r.faces for _, r in sorted(results.items())] == \
        serial.groupby("source")["face"].count().tolist()


def test_a_worker_with_other_weights_than_the_plan_refuses_them():
    from emobatch.errors import WeightsError
    from emobatch.pipeline import classifier_of

    plan = dataclasses.replace(resolve_plan(Settings(device="cpu")), weights_sha256="0" * 64)
    with pytest.raises(WeightsError, match="not the weights this run was planned with"):
        classifier_of(plan)
