"""`FolderLock`: the one-live-process lock on a run's folder and on an `--annotate` folder."""
from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from ..errors import UsageError


class FolderLock:
    """An exclusive flock on the file `path`, held by one live process (a killed one holds
    nothing); the pid of its holder is in the file."""

    def __init__(self, path: Path, busy: str) -> None:
        """busy: the UsageError's message when another process holds it ({pid} is filled)."""
        self.path, self.busy = Path(path), busy
        self._fd: int | None = None

    def acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    pid = self.path.read_text().strip() or "?"
                    raise UsageError(self.busy.format(pid=pid)) from None
                raise
            try:  # its holder may have just removed the file we locked: lock anew
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            except FileNotFoundError:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    @staticmethod
    def is_held(path: Path) -> bool:
        """Whether a live process holds the lock file `path` (probed with a shared lock,
        which never blocks another prober)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            return e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
        finally:
            os.close(fd)  # also lets go of the shared lock
        return False

    def release(self, remove: bool = False) -> None:
        """Let go (removing the file first, while still held, if `remove`). Never raises: a
        lock file that cannot be removed (its folder made read-only mid-run) is held by no
        one once closed, and the run's own error is the one to report."""
        if self._fd is None:
            return
        if remove:
            try:
                self.path.unlink(missing_ok=True)
            except OSError:
                pass
        os.close(self._fd)
        self._fd = None
