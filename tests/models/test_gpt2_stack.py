"""GPT-2 blocks on a ViT stem (docs/experiments.md, item 14): causality, checkpoints, renders, digits."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from conftest import render

from lightning_featvis import FeatvisError, NeuronObjective, Octave
from lightning_featvis.models.gpt2_stack import GPT2ViTStack
from lightning_featvis.networks import causal_mask

#: 16 px images, 4 px patches: a 4x4 grid of 16 patches + the class token, width 16, 3 blocks
TINY = dict(weights=None, gpt2=None, num_blocks=3, image_size=16, patch_size=4, hidden_dim=16,
            num_heads=2, mlp_dim=32, num_classes=5, model_name="tiny_gpt2")


def tiny_stack(**overrides) -> GPT2ViTStack:
    return GPT2ViTStack(**{**TINY, **overrides})


def patch_pixels(grad: torch.Tensor, q: int, patch: int = 4, grid: int = 4) -> torch.Tensor:
    """The ``[B, 3, patch, patch]`` pixels of patch ``q`` (reading order) of ``grad``."""
    row, col = divmod(q, grid)
    return grad[..., row * patch:(row + 1) * patch, col * patch:(col + 1) * patch]


@pytest.mark.parametrize("positional", ["none", "vit", "gpt2"])
def test_a_patch_unit_has_exactly_zero_gradient_on_later_patches(positional):
    """The seed's claim: a unit at patch p can only change patches 0..p (class token is token 0)."""
    torch.manual_seed(0)
    adapter = tiny_stack(positional=positional)
    net = adapter.build().eval()
    for block in (0, 2):
        for p in (0, 5, 10, 15):
            image = torch.rand(1, 3, 16, 16, requires_grad=True)
            acts: dict[str, torch.Tensor] = {}
            handle = net.blocks[block].register_forward_hook(
                lambda m, i, o: acts.__setitem__("out", o[0] if isinstance(o, tuple) else o))
            net(adapter.normalize(image))
            handle.remove()
            unit = acts["out"][0, p + 1, 3]  # patch p is token p + 1, neuron 3
            (grad,) = torch.autograd.grad(unit, image)
            own = patch_pixels(grad, p).abs().max()
            assert own > 0
            for q in range(p + 1, 16):  # later patches: nothing beyond float rounding of the unit's own
                assert patch_pixels(grad, q).abs().max() <= 1e-6 * own, (positional, block, p, q)
            if p > 0:  # the first patch is seen through attention
                assert patch_pixels(grad, 0).abs().max() > 0


def test_blocks_are_causal_token_by_token():
    torch.manual_seed(0)
    net = tiny_stack().build().eval()
    x = torch.randn(2, 17, 16)
    mask = causal_mask(17, x.dtype, x.device)
    for t in range(16):
        y = x.clone()
        y[:, t + 1:] = torch.randn_like(y[:, t + 1:])
        with torch.no_grad():
            a, b = net.blocks[0](x, attention_mask=mask), net.blocks[0](y, attention_mask=mask)
        a, b = (o[0] if isinstance(o, tuple) else o for o in (a, b))
        # earlier tokens: the same up to float rounding (a later token leaking in moves them by 1e-3 or more)
        torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=1e-5)
        assert not torch.allclose(a[:, t + 1:], b[:, t + 1:])


def test_the_stack_round_trips_through_a_checkpoint_file(tmp_path):
    torch.manual_seed(0)
    net = tiny_stack(positional="gpt2").build().eval()
    torch.nn.init.normal_(net.head.weight)
    path = tmp_path / "stack.pt"
    torch.save(net.state_dict(), path)
    loaded = tiny_stack(positional="gpt2", checkpoint=str(path)).build().eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
    with pytest.raises(FeatvisError, match="does not match"):
        tiny_stack(positional="none", checkpoint=str(path)).build()


def test_names_and_layouts():
    adapter = tiny_stack()
    names = dict(adapter.build().named_modules())
    assert {"conv_proj", "blocks.0", "blocks.2", "blocks.2.mlp.c_fc", "ln_f", "head"} <= set(names)
    assert adapter.layout("conv_proj").kind == "map"
    assert adapter.layout("blocks.2").kind == "tokens" and adapter.layout("blocks.2").prefix_tokens == 1
    assert adapter.layout("head").kind == "logits" and adapter.logits_layer == "head"
    with pytest.raises(FeatvisError, match="num_blocks"):
        tiny_stack(num_blocks=13)


def test_a_gpt2_that_cannot_be_loaded_explains_the_local_directory(tmp_path):
    with pytest.raises(FeatvisError, match="gpt2: /path/to/gpt2"):
        tiny_stack(weights="IMAGENET1K_V1", gpt2=str(tmp_path))._gpt2()


def test_render_raises_a_block_neuron(tmp_path):
    torch.manual_seed(0)
    objective = NeuronObjective(tiny_stack(), octaves=[Octave(steps=20, lr=(0.05, 0.02))])
    first = {}

    class First(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            first.setdefault("value", float(trainer.callback_metrics["activation"]))

    got = render(objective, ["blocks.1:neuron=3", "blocks.2:patch=5"], tmp_path, callbacks=[First()])
    acts = got.activations()
    assert set(acts) == {"blocks.1:neuron3", "blocks.2:patch5"}
    assert min(acts.values()) > first["value"] + 0.5


def test_gpt2_blocks_load_from_a_local_directory(tmp_path):
    from transformers import GPT2Model

    torch.manual_seed(0)
    source = tiny_stack(num_blocks=3)._gpt2()  # random GPT-2 of the tiny size
    source.save_pretrained(tmp_path)
    loaded = tiny_stack(weights="IMAGENET1K_V1", gpt2=str(tmp_path), num_blocks=2)._gpt2()
    assert isinstance(loaded, GPT2Model)
    torch.testing.assert_close(loaded.h[1].mlp.c_fc.weight, source.h[1].mlp.c_fc.weight)
    with pytest.raises(FeatvisError, match="16 wide"):
        tiny_stack(weights="IMAGENET1K_V1", gpt2=str(tmp_path), hidden_dim=32, mlp_dim=64)._gpt2()
