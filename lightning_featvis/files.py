"""Writing result files so that they are never half-written or lost."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from lightning_featvis.errors import WriteError, is_write_failure


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: readers never see a
    half-written file, and an interrupted write leaves the old file intact.

    The temporary name is per process (concurrent writers stay apart) and the file is created
    normally, so it gets the usual umask permissions (``mkstemp`` would make it owner-only).

    Raises:
        WriteError: the disk is full or read-only, or the folder is not writable (the old file,
            if any, is left as it was).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only folder holds no temporary file to remove
        if is_write_failure(err):
            raise WriteError(path, err.strerror) from err
        raise


def atomic_write_csv(path: Path, fields: Sequence[str], rows: Iterable[dict]) -> None:
    """Write ``rows`` (dicts keyed by ``fields``) as a CSV file with a header, atomically; floats
    are written with 6 significant digits."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()} for row in rows)
    atomic_write(path, text.getvalue().encode())
