"""The three callback roles are declared: the objective finds them by type, every shipped
callback that plays one subclasses it, and a misspelt override fails when the callback is built."""

from __future__ import annotations

import inspect

import pytest
import torch
from conftest import render

import lightning_featvis.callbacks as callbacks
from lightning_featvis import NeuronObjective, Octave
from lightning_featvis.callbacks import GroupResultHook, Penalty, ViewAugmentation

ROLES = {Penalty: "penalty", ViewAugmentation: "augment", GroupResultHook: "on_target_group_end"}
SHIPPED = [cls for _, cls in inspect.getmembers(callbacks, inspect.isclass)
           if cls.__module__.startswith("lightning_featvis.callbacks") and cls not in ROLES]


@pytest.mark.parametrize("cls", SHIPPED, ids=lambda c: c.__name__)
def test_every_shipped_callback_that_plays_a_role_declares_it(cls):
    for role, method in ROLES.items():
        if method in vars(cls) or any(method in vars(base) for base in cls.__mro__[1:] if base not in ROLES):
            assert issubclass(cls, role), f"{cls.__name__} defines {method} but is no {role.__name__}"


@pytest.mark.parametrize("role", list(ROLES), ids=lambda r: r.__name__)
def test_a_misspelt_override_fails_when_the_callback_is_built(role):
    typo = type("Typo", (role,), {ROLES[role] + "s": lambda self, *args: None})
    with pytest.raises(TypeError, match="abstract"):
        typo()


class Doubling(ViewAugmentation):
    """Two copies of each view, the second upside down."""

    def __init__(self):
        self.calls = 0

    def augment(self, views, targets, step):
        self.calls += 1
        return torch.stack([views, views.flip(-2)], dim=1).flatten(0, 1)


class Brightness(Penalty):
    """Pushes the canvas towards black, heavily: the images must come out darker."""

    def __init__(self, weight):
        self.weight, self.calls = weight, 0

    def penalty(self, view, image, step):
        self.calls += 1
        return self.weight * image.mean(dim=(1, 2, 3))


def test_the_objective_dispatches_each_role_by_type(tiny, tmp_path):
    steps, targets = 6, ["heads.head:class=0-1"]

    def run(*extra):
        objective = NeuronObjective(tiny, octaves=[Octave(steps=steps)],
                                    optimizer=lambda p: torch.optim.Adam(p, lr=0.05))
        return render(objective, targets, tmp_path, callbacks=list(extra))

    plain = run()
    augmentation, penalty = Doubling(), Brightness(weight=50.0)
    both = run(augmentation, penalty)
    assert augmentation.calls == steps  # once per step; the final measurement is not augmented
    assert penalty.calls == steps + 1  # every step, and the final loss the result reports
    darker = {k: float(v.mean()) for k, v in both.images().items()}
    for key, image in plain.images().items():
        assert darker[key] < float(image.mean()) - 0.05
