"""Advisory locks on an open file, the same on every platform tastemap runs on: ``flock`` where
the system has it, ``msvcrt.locking`` on Windows (which has no shared locks: a shared lock is
granted without locking, see :data:`SHARED_LOCKS`)."""

from __future__ import annotations

import os

try:
    import fcntl

    SHARED_LOCKS = True
    """Whether readers can hold shared locks that a writer's exclusive lock waits for."""

    def try_lock(fd: int, *, exclusive: bool = True) -> bool:
        """Take the lock on ``fd`` without waiting; False when another process holds it."""
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # pragma: no cover - Windows
    import msvcrt

    SHARED_LOCKS = False

    def try_lock(fd: int, *, exclusive: bool = True) -> bool:
        if not exclusive:
            return True
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
