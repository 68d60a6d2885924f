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
