"""Run `emobatch` with a fault injected at an exact point of the real code (for tests).

    python tests/fault_hooks.py TARGET CALLS ACTION emobatch-args...

After the CALLS-th call of TARGET (finish: an input's result stored; chunk: a chunk of rows
and its checkpoint stored; part: a chunk's rows stored, its checkpoint not yet; publish: a
part copied into the final timeline; still: a photo's faces found and classified; report:
the report's page rendered, not yet written; annotated: an annotated output drawn and
recorded in its input's store), ACTION
happens in the running process: SIGKILL, SIGTERM or SIGINT to itself, rmtree:PATH (the
output folder vanishes), waitfor:PATH (the run holds still there, alive, until PATH exists),
fill:PATH (the disk holding the folder PATH is filled up), raise (a RuntimeError there,
as a bug would raise) or raise:TEXT (a RuntimeError saying TEXT, as a library would).
Several faults: comma-separated TARGETs, CALLS and ACTIONs.
"""
import os
import shutil
import signal
import sys
import time

from emobatch import pipeline, report
from emobatch.batch import sinks, store

TARGETS = {"finish": (store.ItemStore, "finish"), "chunk": (store.ItemStore, "write_chunk"),
           "part": (store, "_write_rows"), "publish": (sinks.TimelineSink, "write_table"),
           "still": (pipeline.FacePipeline, "process"), "report": (report, "render"),
           "annotated": (store.ItemStore, "record_annotated")}


def fill(folder: str) -> None:
    """Write a file into `folder` until its disk is full."""
    with open(os.path.join(folder, "filler"), "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass


def act(action: str, calls: int, target: str) -> None:
    if action.startswith("rmtree:"):
        shutil.rmtree(action.split(":", 1)[1])
    elif action.startswith("fill:"):
        fill(action.split(":", 1)[1])
    elif action == "raise":
        raise RuntimeError(f"fault injected after call {calls} of {target}")
    elif action.startswith("raise:"):  # as a library raises it, e.g. out of threads
        raise RuntimeError(action.split(":", 1)[1])
    elif action.startswith("waitfor:"):
        flag, deadline = action.split(":", 1)[1], time.monotonic() + 300
        while not os.path.exists(flag) and time.monotonic() < deadline:
            time.sleep(0.05)
    else:
        os.kill(os.getpid(), getattr(signal, action))


def inject(target: str, calls: int, action: str) -> None:
    owner, name = TARGETS[target]
    original, count = getattr(owner, name), [0]

    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        count[0] += 1
        if count[0] == calls:
            act(action, calls, target)
        return result

    setattr(owner, name, wrapped)


def main() -> int:
    for target, calls, action in zip(*(a.split(",") for a in sys.argv[1:4]), strict=True):
        inject(target, int(calls), action)
    # Ctrl-C as in a terminal, also where the tests run in the background (SIGINT ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from emobatch.cli import main as cli_main

    return cli_main(sys.argv[4:])


if __name__ == "__main__":
    sys.exit(main())
