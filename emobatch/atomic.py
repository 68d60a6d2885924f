"""Every file emobatch writes goes through here: unique temp name, fsync, atomic rename.

A temp file is a hidden sibling of its target (same folder, so the rename is atomic) named
`.<target name>.<host>-<pid>-<random>.emobatch-tmp`: two runs never share one, and the host
and pid say whether the process that made it is still alive, so the temp files of a killed
run are recognised and removed by the next one (`remove_stale_temps`). A target name too long
for that is shortened in it (`fit_name`), so any name the file system takes can be written.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from .errors import OutputError

TEMP_SUFFIX = ".emobatch-tmp"


_HOST = socket.gethostname().replace("-", "_").replace(".", "_")


NAME_MAX = 255
"""The longest file name (bytes, one path component) on Linux's file systems."""


def fit_name(prefix: str, name: str, suffix: str) -> str:
    """`prefix + name + suffix`, or where that is longer than NAME_MAX bytes, with `name`
    cut short and a hash of it added (`name-start~<hash>`): distinct names stay distinct."""
    whole = prefix + name + suffix
    if len(os.fsencode(whole)) <= NAME_MAX:  # a name's bytes: not UTF-8 ones too
        return whole
    tag = "~" + hashlib.sha256(os.fsencode(name)).hexdigest()[:12]
    room = NAME_MAX - len(os.fsencode(prefix + tag + suffix))
    short = os.fsencode(name)[:max(room, 0)].decode(errors="ignore")  # no split character
    return prefix + short + tag + suffix


_TEMP_TAIL = len(f"{_HOST}-{2**22}-{'0' * 8}{TEMP_SUFFIX}")  # the longest: pids < 2**22


def _temp_prefix(name: str) -> str:
    """What every temp file of the target `name` starts with (the name may be shortened)."""
    return fit_name(".", name, "." + "x" * _TEMP_TAIL)[:-_TEMP_TAIL]


def temp_path(path: str | Path) -> Path:
    """A fresh, unique hidden temp path beside `path` (nothing is created)."""
    path = Path(path)
    return path.with_name(f"{_temp_prefix(path.name)}{_HOST}-{os.getpid()}-"
                          f"{secrets.token_hex(4)}{TEMP_SUFFIX}")


@contextmanager
def writing(path: str | Path, verb: str = "write") -> Iterator[None]:
    """Turn an OSError while writing `path` into one OutputError with a clear message."""
    try:
        yield
    except OSError as e:
        raise OutputError(f"cannot {verb} {path}: {e.strerror or e}") from e


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where directories can't be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish(tmp: Path, path: str | Path, durable: bool = True) -> Path:
    """fsync the finished temp file `tmp` and rename it onto `path` (atomic, same folder).

    durable=False skips both fsyncs: the rename is still atomic for every reader while the
    system runs, but after a system crash `path` may be missing, empty or cut short. Only
    for files whose reader checks them after a crash (a run's store, `ItemStore.repair`):
    two fsyncs a file were most of the cost of each input in runs of many photos.
    """
    path = Path(path)
    if durable:
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)
    return path


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb", durable: bool = True, **open_kw
                 ) -> Iterator[IO]:
    """Open a temp file for writing; on a clean exit it replaces `path`, else it is removed.

    Readers of `path` see the old file or the complete new one, never a part of it.
    durable: as for `publish`.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, mode, **open_kw) as fh:
            yield fh
        publish(tmp, path, durable)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_path(path: str | Path, durable: bool = True) -> Iterator[Path]:
    """For writers that need a file name (PyAV, pyarrow, OpenCV): yields a temp path that
    replaces `path` on a clean exit and is removed otherwise. durable: as for `publish`."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        publish(tmp, path, durable)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str, durable: bool = True) -> Path:
    """Atomically replace `path` with `text` (UTF-8). durable: as for `publish`."""
    with atomic_write(path, "w", durable, encoding="utf-8", newline="") as fh:
        fh.write(text)
    return Path(path)


def _owner_alive(name: str) -> bool:
    """Whether the process named in a temp file's name may still be running."""
    try:
        host, pid, _ = name[: -len(TEMP_SUFFIX)].rsplit(".", 1)[1].rsplit("-", 2)
        pid_n = int(pid)
    except ValueError:
        return True  # not ours to judge
    if host != _HOST:
        return True  # another machine's (a shared folder): leave it
    try:
        os.kill(pid_n, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: str | Path, target_name: str | None = None,
                       recursive: bool = False, any_owner: bool = False) -> list[Path]:
    """Delete emobatch temp files in `folder` (of `target_name` only, if given; in its
    subfolders too if `recursive`) whose process is gone; returns what was removed. Live
    processes' temp files are left alone, unless `any_owner`: for names only the holder of
    a run's lock writes, where another host's (a container's) leftovers count as dead too."""
    folder = Path(folder)
    prefix = _temp_prefix(target_name) if target_name else "."
    removed = []
    try:
        entries = list(folder.rglob(f"*{TEMP_SUFFIX}") if recursive else folder.iterdir())
    except OSError:
        return removed
    for p in entries:
        if (p.name.startswith(prefix) and p.name.endswith(TEMP_SUFFIX)
                and (any_owner or not _owner_alive(p.name))):
            try:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed
