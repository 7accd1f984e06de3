"""A run's folder (``lightning_logs/version_N``): claimed atomically before the run starts, taken
back when a failed run leaves nothing in it.

Lightning picks ``version_N`` by listing the folders that exist, so two runs started at the same
moment into one root would both pick the same N and write into one folder. A featvis run
instead *creates* its folder before anything else (``mkdir`` fails if another run got there
first; the next number is tried), in the main process, before ``ddp_spawn`` starts the workers
that inherit the number.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lightning_featvis.errors import WriteError, is_write_failure

#: files a run writes about itself before it has any result
BOOKKEEPING = ("config.yaml", "hparams.yaml", "featvis_run.json", "metrics.csv")
#: give up after this many taken numbers in a row (another process is racing on every one)
_ATTEMPTS = 1000


def claim_version(logger: Logger | None) -> Path | None:
    """Create the logger's next free ``version_N`` folder and pin the logger to it.

    Only loggers that number their versions themselves (TensorBoard and CSV, with no version
    given) on a local disk are claimed, and only by rank 0 (the other ranks' loggers write
    nothing). Returns the folder created, or None when nothing was claimed.

    Raises:
        WriteError: the root cannot be written (read-only, full, no permission).
    """
    if not isinstance(logger, (TensorBoardLogger, CSVLogger)) or logger._version is not None:
        return None  # a named version is the user's choice, written over on purpose
    if rank_zero_only.rank != 0 or "://" in str(logger.root_dir):
        return None
    version = logger._get_next_version()
    for _ in range(_ATTEMPTS):
        # Lightning keeps the chosen number in `_version`; setting it pins log_dir to our folder
        logger._version = version
        folder = Path(logger.log_dir)
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            folder.mkdir()
        except FileExistsError:
            version += 1
            continue
        except OSError as err:
            logger._version = None
            if is_write_failure(err):
                raise WriteError(folder, err.strerror, "choose a writable --trainer.default_root_dir") from err
            raise
        return folder
    logger._version = None
    raise WriteError(Path(logger.root_dir), f"{_ATTEMPTS} version folders in a row were taken by other runs")


def holds_results(folder: Path) -> bool:
    """Whether ``folder`` holds anything beyond a run's bookkeeping (its config, run file and
    TensorBoard event files): images, tables, checkpoints."""
    for path in folder.rglob("*"):
        if path.is_file() and not (path.name in BOOKKEEPING or path.name.startswith("events.out.tfevents")):
            return True
    return False


def release(folder: Path | None) -> None:
    """Remove a claimed run folder that holds no results (a run that failed before making
    any); a folder with results is left exactly as it is."""
    if folder is None or not folder.is_dir() or holds_results(folder):
        return
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.rmdir()  # lightning_logs/, if this run was all it would have held
    except OSError:
        pass  # other runs are in it (or it cannot be changed): leave it
