import sys

import pytest

from emobatch.memory import limit_heap_growth


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_limit_heap_growth_applies_once():
    first = limit_heap_growth()
    assert limit_heap_growth() == first  # idempotent
