from pathlib import Path

from emobatch.atomic import NAME_MAX
from emobatch.timeline import TimelinePaths


def test_every_file_beside_out_is_named_by_timeline_paths(tmp_path):
    paths = TimelinePaths(tmp_path / "results.parquet")
    assert paths.errors == tmp_path / "results.errors.csv"
    assert paths.meta == tmp_path / "results.meta.json"
    assert paths.report == tmp_path / "results.report.html"
    assert paths.partial.timeline == tmp_path / "results.partial.parquet"
    assert paths.partial.errors == tmp_path / "results.partial.errors.csv"
    assert paths.run_dir == tmp_path / ".results.parquet.emobatch"
    assert paths.inputs == tmp_path / "results.inputs.parquet"
    assert TimelinePaths(tmp_path / "r.csv").inputs == tmp_path / "r.inputs.csv"
    assert paths.written == (paths.timeline, paths.errors, paths.meta, paths.inputs,
                             paths.partial.timeline, paths.partial.errors, paths.partial.meta,
                             paths.partial.inputs)
    assert TimelinePaths("r.csv").timeline == Path("r.csv")  # a str is taken too


def test_the_run_folder_of_a_long_name_fits_the_file_system(tmp_path):
    name = "x" * (NAME_MAX - len(".parquet")) + ".parquet"
    run_dir = TimelinePaths(tmp_path / name).run_dir
    assert len(run_dir.name.encode()) <= NAME_MAX and run_dir.name.startswith(".")
    assert run_dir.name.endswith(".emobatch")
