"""Run an iterator in a background thread so decoding overlaps inference.

PyAV and OpenCV release the GIL while they decode, so a decode thread gives real overlap
with the detector and classifier on another core.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


def prefetch(it: Iterator[T], depth: int = 4) -> Iterator[T]:
    """Yield the items of `it`, produced up to `depth` ahead in a daemon thread.

    An exception raised by `it` is re-raised here after the items before it. Closing this
    generator early stops the producer (and closes `it`) promptly.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
        except BaseException as e:  # forwarded to the consumer
            q.put((_DONE, e))
            return
        finally:
            close = getattr(it, "close", None)
            if close is not None and stop.is_set():
                close()
        q.put((_DONE, None))

    th = threading.Thread(target=produce, daemon=True, name="emobatch-decode")
    th.start()
    try:
        while True:
            item, err = q.get()
            if item is _DONE:
                if err is not None:
                    raise err
                return
            yield item
    finally:
        stop.set()
        while th.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                th.join(timeout=0.05)
