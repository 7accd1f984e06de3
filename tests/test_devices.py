"""Devices shard targets, not gradients: 2 CPU processes write the images 1 process writes."""

import numpy as np
from conftest import render
from PIL import Image

from lightning_featvis import (
    GaussianBlur,
    ImageWriter,
    NeuronObjective,
    Octave,
    PositionalJitter,
)


def pngs(folder):
    return {p.name: np.asarray(Image.open(p), dtype=np.int16) for p in folder.rglob("*.png")}


def test_two_processes_give_the_images_of_one(tiny, tmp_path):
    # 7 targets in groups of 3: 3 groups, so rank 1 also steps through a padding-only group
    targets = ["encoder.layers.encoder_layer_1:neuron=0-4", "heads.head:class=0-1"]
    for devices in (1, 2):
        objective = NeuronObjective(tiny, octaves=[Octave(steps=3, lr=(0.05, 0.05)), Octave(steps=3, size=24)])
        callbacks = [PositionalJitter(), GaussianBlur(sigma=[[1.0, 0.5]]), ImageWriter()]
        extra = dict(strategy="ddp_spawn") if devices == 2 else {}
        render(objective, targets, tmp_path / f"d{devices}", group_size=3, callbacks=callbacks, devices=devices, **extra)
    one, two = pngs(tmp_path / "d1"), pngs(tmp_path / "d2")
    assert len(one) == 7 and set(one) == set(two)
    assert max(int(np.abs(one[k] - two[k]).max()) for k in one) <= 1
