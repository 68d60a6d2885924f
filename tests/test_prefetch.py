import threading
import time

import pytest

from emobatch.media.prefetch import prefetch


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


def test_producer_runs_ahead_while_the_consumer_works():
    """Overlap, shown by order of events rather than by wall-clock time: while the consumer
    holds item 0, the producer goes on producing, up to the queue's depth and no further."""
    depth = 3
    produced = []
    ahead = threading.Event()

    def gen():
        for i in range(20):
            produced.append(i)
            if i == depth:
                ahead.set()
            yield i

    it = prefetch(gen(), depth=depth)
    assert next(it) == 0
    assert ahead.wait(5.0), f"producer stalled at {produced}"  # items 1..depth made meanwhile
    time.sleep(0.2)  # the bound: the queue's depth plus the one item waiting to be put
    assert len(produced) <= 1 + depth + 1
    assert list(it) == list(range(1, 20))
