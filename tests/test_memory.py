import sys

import pytest

import numpy as np

from emobatch.memory import limit_heap_growth, release_free_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_limit_heap_growth_applies_once():
    first = limit_heap_growth()
    assert limit_heap_growth() == first  # idempotent


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_release_free_memory_returns_freed_heap_pages():
    if not limit_heap_growth():
        pytest.skip("not glibc")
    # 8 MB blocks stay in the heap under the 32 MB mmap threshold; free all but the last so
    # the free space is inside the heap, where only malloc_trim can return it
    blocks = [np.ones(8 << 20, np.uint8) for _ in range(8)]
    del blocks[:-1]
    assert release_free_memory()


def test_malloc_tuning_only_where_a_process_starts():
    """A library user's process (a notebook, a Dask worker) keeps its own malloc settings: the
    pipeline does not change them; the CLI and emobatch's own worker processes do."""
    import subprocess

    code = ("from emobatch import memory; from emobatch.config import Settings; "
            "from emobatch.pipeline import FacePipeline; FacePipeline(Settings(device='cpu')); "
            "print(memory._done)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


def test_importing_emobatch_changes_no_process_setting():
    """Importing the package, its sources and its pipeline leaves os.environ, malloc and
    Pillow's pixel limit as they were; configure_process (what the CLI and emobatch's workers call)
    then applies the tuning."""
    import os
    import subprocess

    # the libraries first: importing OpenCV sets LD_LIBRARY_PATH, its own doing
    code = ("import os, av, cv2, numpy, pandas, pyarrow, torch, PIL.Image; "
            "env, limit = dict(os.environ), PIL.Image.MAX_IMAGE_PIXELS; "
            "import emobatch, emobatch.media.sources, emobatch.pipeline, emobatch.batch.driver, "
            "emobatch.batch.runners; from emobatch import memory; "
            "from emobatch.batch.process_tuning import configure_process; "
            "print(dict(os.environ) == env, PIL.Image.MAX_IMAGE_PIXELS == limit, memory._done); "
            "configure_process(); "
            "print(PIL.Image.MAX_IMAGE_PIXELS == emobatch.media.sources.MAX_IMAGE_PIXELS, "
            "PIL.Image.MAX_IMAGE_PIXELS > limit, memory._done == memory.limit_heap_growth())")
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True", "False", "True", "True", "True"], r.stdout


def test_dask_preload_tunes_the_worker_process():
    """`--preload emobatch.batch.dask_preload` applies configure_process in a Dask worker;
    a worker without it keeps its defaults (tasks never change them)."""
    distributed = pytest.importorskip("distributed")

    def settings():
        from PIL import Image

        from emobatch import memory
        return Image.MAX_IMAGE_PIXELS, memory._done

    from emobatch.media.sources import MAX_IMAGE_PIXELS

    for preload, expected in (([], False), (["emobatch.batch.dask_preload"], True)):
        with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                      dashboard_address=":0", preload=preload) as cluster, \
                distributed.Client(cluster) as client:
            (limit, tuned), = client.run(settings).values()
        assert (limit == MAX_IMAGE_PIXELS) is expected
        assert tuned is (expected and sys.platform.startswith("linux"))


def test_libc_is_found_once_per_process(monkeypatch):
    """Item 22: every input's release_free_memory called ctypes.util.find_library, which
    runs `ldconfig -p` in a child process: 20,000 photos, 20,000 processes."""
    import ctypes.util

    from emobatch import memory

    memory._libc()  # found already (or now), once
    calls = []
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: calls.append(name))
    for _ in range(3):
        memory.release_free_memory()
        memory._libc()
    assert calls == []
