"""RunningHistogram: exact counts on power-of-two bins, whatever the batching, the shards or
the order of the stream."""

from __future__ import annotations

import torch

from lightning_featvis.microscope.histogram import RunningHistogram


def test_counts_are_exact_and_do_not_depend_on_batching_sharding_or_order():
    generator = torch.Generator().manual_seed(0)
    # three units of very different spreads and offsets
    values = torch.randn(500, 3, generator=generator) * torch.tensor([1.0, 100.0, 0.001]) + torch.tensor([0, 5, -3])
    whole = RunningHistogram(3, bins=16)
    for batch in values.split(7):
        whole.update(batch)
    first, second = RunningHistogram(3, bins=16), RunningHistogram(3, bins=16)
    for batch in values[:200].split(50):
        first.update(batch)
    for batch in values[200:].flip(0).split(33):  # another shard, read backwards
        second.update(batch)
    narrow = RunningHistogram(3, bins=16)
    narrow.update(values[:3])  # a shard of a narrower range merged into first: its bins are finer
    rest = RunningHistogram(3, bins=16)
    rest.update(values[3:200])
    narrow.merge(rest)
    assert torch.equal(narrow.counts, RunningHistogram.from_state_dict(first.state_dict()).counts)
    first.merge(RunningHistogram.from_state_dict(second.state_dict()))
    assert torch.equal(first.counts, whole.counts) and torch.equal(first.exponent, whole.exponent)
    for unit in range(3):
        edges = whole.edges(unit)
        assert edges[0] <= values[:, unit].min() and values[:, unit].max() < edges[-1]
        assert torch.equal(torch.histogram(values[:, unit].double(), bins=edges).hist.long(), whole.counts[unit])
    assert whole.seen == 500
