"""What every zoo's training data module shares: a training set, a held-out set, and the loaders
Lightning asks for (the held-out set serves validation and test)."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader, Dataset


class HeldOutDataModule(L.LightningDataModule):
    """Serves :attr:`train_set` (shuffled) and :attr:`val_set` (for validation and test), which
    a subclass's ``setup`` makes; batches are ``(images [B, 3, S, S] in [0, 1], labels [B])``.

    Args:
        batch_size: images per batch.
        num_workers: data-loader worker processes.
    """

    def __init__(self, batch_size: int = 64, num_workers: int = 0) -> None:
        super().__init__()
        self.batch_size, self.num_workers = batch_size, num_workers
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)
