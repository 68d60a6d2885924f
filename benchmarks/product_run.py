"""One input through `emobatch run`'s own path, for the benchmarks that time or measure a run:
process_item into the input's store (rows gathered in a RowBuffer, a part at each
checkpoint, Arrow IPC), then the parts copied into the timeline as the run publishes them."""
from __future__ import annotations

from pathlib import Path

from emobatch.batch.one_input import ProgressFn, process_item
from emobatch.batch.sinks import TimelineSink
from emobatch.batch.store import ItemStore, WorkItem, item_key, read_part
from emobatch.pipeline import FacePipeline


def run_as_product(pipe: FacePipeline, source: Path, out: Path,
                   progress: ProgressFn | None = None) -> int:
    """Write source's timeline to out (.parquet or .csv), its store in a folder beside it;
    the number of frames processed. SystemExit when the input fails."""
    store = ItemStore(out.with_name(f".{out.name}.item"))
    res = process_item(pipe, WorkItem(0, source, item_key(source)), store, progress)
    if res.error:
        raise SystemExit(f"{source}: {res.error}")
    with TimelineSink(out, labels=pipe.classifier.labels) as sink:
        for part in store.finished_parts():
            sink.write_table(read_part(part))
    return res.frames
