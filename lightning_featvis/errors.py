"""The errors users see: one message naming the problem and what to do."""

from __future__ import annotations

import errno
from pathlib import Path

#: ``OSError`` numbers that mean "this output cannot be written here" (not a bug of ours)
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EFBIG})


class FeatvisError(ValueError):
    """Bad input (unknown layer, index out of range, unreadable file, ...).

    The CLI prints these as one message instead of a traceback.
    """


class WriteError(FeatvisError):
    """An output could not be written (a full or read-only disk, no permission).

    The message is ``cannot write <path>: <reason>`` plus what to do; results finished before
    stay as they were (every file is written through a temporary file and a rename).
    """

    def __init__(self, path: str | Path | None, reason: str, advice: str = "") -> None:
        self.path, self.reason = path, reason
        where = str(path) if path is not None else "the run folder"
        super().__init__(f"cannot write {where}: {reason}" + (f"; {advice}" if advice else ""))

    @classmethod
    def from_os_error(cls, err: OSError, path: str | Path | None = None, advice: str = "") -> WriteError:
        """The write error for ``err`` (its own file name when it has one, else ``path``)."""
        return cls(err.filename or path, err.strerror or str(err), advice)


def is_write_failure(err: BaseException) -> bool:
    """Whether ``err`` is the system refusing a write (disk full, read-only, no permission)."""
    return isinstance(err, OSError) and err.errno in WRITE_ERRNOS
