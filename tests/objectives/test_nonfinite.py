"""A NaN or inf stops only its own target: it keeps its last finite image, says why in the
manifest, and the other targets of its group finish."""

from __future__ import annotations

import csv

import lightning as L
import torch
from conftest import render

from lightning_featvis import ImageWriter, NeuronObjective, Octave
from lightning_featvis.zoo.digits import DigitsViT

BLOCK1 = "encoder.layers.encoder_layer_1"
TARGETS = [f"{BLOCK1}:neuron=0-2"]


class NaNLoss(NeuronObjective):
    """Neuron 1's loss turns NaN from step 5 on."""

    def loss(self, selected, target):
        loss = super().loss(selected, target)
        return loss * float("nan") if target.unit.neurons == (1,) and self.position.step >= 5 else loss


class InfImage(L.Callback):
    """Neuron 2's canvas gets an inf pixel after step 7's optimizer step."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch["step"] == 7:
            def poison(x):
                x[2, :, 3, 3] = float("inf")
                return x
            pl_module.param.update_(poison)


def objective(cls, steps):
    return cls(DigitsViT(), reduction="mean", octaves=[Octave(steps=steps)],
               optimizer=lambda params: torch.optim.Adam(params, lr=0.05))


def test_a_nonfinite_target_stops_with_its_last_finite_image_and_the_others_finish(tmp_path, capsys):
    seen = render(objective(NaNLoss, 20), TARGETS, tmp_path / "bad", group_size=3,
                  callbacks=[InfImage(), ImageWriter()])
    (result,) = seen.results
    assert result.notes == ["", "non-finite loss at step 5", "non-finite image at step 7"]
    assert torch.isfinite(result.images).all()
    # neuron 1 is exactly where 5 clean steps (0-4) leave it; neuron 2 where 7 (0-6) leave it
    for steps, slot in ((5, 1), (7, 2)):
        (short,) = render(objective(NeuronObjective, steps), TARGETS, tmp_path / f"short{steps}", group_size=3,
                          callbacks=[]).results
        torch.testing.assert_close(result.images[slot], short.images[slot], rtol=0, atol=1e-6, msg=f"{steps} steps")
    (clean,) = render(objective(NeuronObjective, 20), TARGETS, tmp_path / "clean", group_size=3, callbacks=[]).results
    # the others go on as if nothing happened
    torch.testing.assert_close(result.images[0], clean.images[0], rtol=0, atol=1e-6)
    with (tmp_path / "bad" / "images" / "manifest.csv").open() as f:
        status = {row["unit"]: row["status"] for row in csv.DictReader(f)}
    assert status == {"neuron0": "ok", "neuron1": "non-finite loss at step 5", "neuron2": "non-finite image at step 7"}
    err = capsys.readouterr().err
    assert f"{BLOCK1}:neuron1: non-finite loss at step 5; this target stops" in err
