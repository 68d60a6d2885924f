import threading
import time

import pytest

from emobatch.prefetch import prefetch


def test_yields_everything_in_order():
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))


def test_error_after_good_items():
    def gen():
        yield 1
        yield 2
        raise ValueError("broken at 3")

    got = []
    with pytest.raises(ValueError, match="broken at 3"):
        for x in prefetch(gen()):
            got.append(x)
    assert got == [1, 2]


def test_early_close_stops_and_closes_producer():
    closed = threading.Event()

    def gen():
        try:
            for i in range(10_000):
                yield i
        finally:
            closed.set()

    it = prefetch(gen(), depth=2)
    assert next(it) == 0
    it.close()
    assert closed.wait(2.0)


def test_overlaps_work():
    def slow():
        for i in range(5):
            time.sleep(0.05)
            yield i

    t0 = time.perf_counter()
    for _ in prefetch(slow()):
        time.sleep(0.05)  # consumer work overlaps the producer's sleep
    assert time.perf_counter() - t0 < 0.45
