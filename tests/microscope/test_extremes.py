"""Running top-k / bottom-k per unit: the same as keeping every activation and sorting, whatever
the batching, the sharding or a save and resume in between."""

from __future__ import annotations

import pytest
import torch

from lightning_featvis.errors import FeatvisError
from lightning_featvis.microscope.extremes import RunningExtremes


def brute_force(values: torch.Tensor, k: int, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Every activation ``[N, U]`` kept, each unit's k extremes by (value, then smaller index)."""
    tops, where = [], []
    for unit in range(values.shape[1]):
        pairs = sorted(((float(v), i) for i, v in enumerate(values[:, unit])),
                       key=lambda p: (-p[0] if largest else p[0], p[1]))[:k]
        tops.append([v for v, _ in pairs])
        where.append([i for _, i in pairs])
    return torch.tensor(tops), torch.tensor(where)


@pytest.fixture
def stream():
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 6, (37, 5), generator=generator).float()  # many ties on purpose


@pytest.mark.parametrize("batch", [1, 4, 37])
def test_the_running_extremes_equal_keeping_everything(stream, batch):
    extremes = RunningExtremes(units=5, k=4)
    for start in range(0, len(stream), batch):
        rows = stream[start:start + batch]
        extremes.update(rows, torch.arange(start, start + len(rows)))
    for largest, values, indices in ((True, extremes.top_values, extremes.top_indices),
                                     (False, extremes.bottom_values, extremes.bottom_indices)):
        want_values, want_indices = brute_force(stream, 4, largest)
        assert torch.equal(values, want_values) and torch.equal(indices, want_indices)
    assert extremes.seen == 37


def test_shards_merged_and_a_resumed_pass_give_the_single_pass(stream):
    whole = RunningExtremes(5, 3)
    whole.update(stream, torch.arange(37))
    # two shards (every other image), as two devices would see them
    even, odd = RunningExtremes(5, 3), RunningExtremes(5, 3)
    even.update(stream[0::2], torch.arange(0, 37, 2))
    odd.update(stream[1::2], torch.arange(1, 37, 2))
    even.merge(odd)
    # a pass saved after 20 images and continued from its state
    first = RunningExtremes(5, 3)
    first.update(stream[:20], torch.arange(20))
    resumed = RunningExtremes.from_state_dict(first.state_dict())
    resumed.update(stream[20:], torch.arange(20, 37))
    for other in (even, resumed):
        assert torch.equal(other.top_indices, whole.top_indices) and torch.equal(other.bottom_values, whole.bottom_values)
        assert other.seen == 37


def test_fewer_images_than_k_keep_what_there_is_and_bad_shapes_are_named():
    extremes = RunningExtremes(2, 5)
    extremes.update(torch.tensor([[1.0, 2.0], [3.0, 0.0]]), torch.tensor([7, 9]))
    assert extremes.top_indices.tolist() == [[9, 7], [7, 9]] and extremes.bottom_values.tolist() == [[1, 3], [0, 2]]
    with pytest.raises(FeatvisError, match=r"\[B, 2\]"):
        extremes.update(torch.zeros(3, 4), torch.arange(3))
    with pytest.raises(FeatvisError, match="cannot merge"):
        extremes.merge(RunningExtremes(2, 4))
    with pytest.raises(FeatvisError, match="k >= 1"):
        RunningExtremes(2, 0)
