"""Warnings Lightning gives that are benign by design for a render, silenced once on import.

The frozen network stays in eval mode; batches describe targets (frozen dataclasses Lightning
cannot move, hence the objective's ``transfer_batch_to_device``); ``GroupSteps`` knows its exact
length and is never split across workers; a resumed sweep may have nothing left to do; a
checkpoint taken inside the epoch resumes exactly (:class:`~lightning_featvis.resume.RunPosition`),
though Lightning cannot see it. A pass of dataset examples returns no predictions; Lightning's own
call of a deprecated torch pytree check is not ours to fix.
"""

import warnings

BENIGN = (
    r".*module\(s\) in eval mode.*",
    r".*resuming from a checkpoint that ended before the epoch ended.*",
    r".*Total length of `(DataLoader|CombinedLoader)` across ranks is zero.*",
    r".*overridden `transfer_batch_to_device`.*",
    r".*`IterableDataset` has `__len__` defined.*",
    r".*does not have many workers.*",
    # a pass of dataset examples keeps what it reads in its own state, not in predictions
    r".*predict returned None.*",
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
)

for _message in BENIGN:
    warnings.filterwarnings("ignore", message=_message)
