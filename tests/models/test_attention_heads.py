"""Attention heads as layers: per-head q, k, v, head outputs and patterns of torchvision, timm
and Hugging Face attention, the head= / from= / to= units, and renders of them."""

import pickle

import pytest
import torch
from conftest import tiny_vit
from torch import nn

import lightning_featvis
from lightning_featvis import FeatvisError
from lightning_featvis.models import AnyModule, Layout
from lightning_featvis.models.attention import (
    MultiheadAttentionSource,
    attach_head_taps,
    attention_heads,
    is_tapped,
)
from lightning_featvis.probe import Probe
from lightning_featvis.units import Unit, check_unit, layer_sizes, parse_units, select

TAPS = ("q", "k", "v", "pattern", "heads")
HEADS = Layout("heads", prefix_tokens=1, heads=2)  # [B, 1+P, 2, d]
PATTERN = Layout("pattern", prefix_tokens=1, heads=2)  # [B, 2, 1+P, 1+P]


class Holder(nn.Module):
    """Calls its attention module the way a block does, so that its taps have a parent to be named in."""

    def __init__(self, attention: nn.Module, call) -> None:
        super().__init__()
        self.attention, self.call = attention, call

    def forward(self, *inputs):
        return self.call(self.attention, *inputs)


def taps_of(holder: nn.Module, *inputs) -> dict[str, torch.Tensor]:
    attach_head_taps(holder)
    acts = Probe(holder, [f"attention.{t}" for t in TAPS])(*inputs)
    return {t: acts[f"attention.{t}"] for t in TAPS}


def merge(heads: torch.Tensor) -> torch.Tensor:
    """[B, T, H, d] -> [B, T, H*d], the input of the output projection."""
    return heads.flatten(2)


# --- the derived tensors are the ones the attention uses ------------------------------------


@pytest.mark.parametrize("packed", [True, False])
def test_multihead_attention_q_k_v_are_its_own(packed):
    torch.manual_seed(0)
    if packed:  # torchvision's ViT blocks: one in_proj_weight, batch first, self-attention
        mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
        x = torch.randn(2, 5, 16)
        inputs, mask = (x, x, x), torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)  # a causal mask too
    else:  # other key/value widths: separate q/k/v weights; sequence first
        mha = nn.MultiheadAttention(16, 4, kdim=8, vdim=12).eval()
        inputs, mask = (torch.randn(5, 2, 16), torch.randn(7, 2, 8), torch.randn(7, 2, 12)), None
        assert mha.in_proj_weight is None
    for p in mha.parameters():
        nn.init.normal_(p, std=0.3)  # torchvision zeroes the biases: make them count

    def call(module, q, k, v):
        return module(q, k, v, attn_mask=mask, need_weights=False)[0]

    with torch.no_grad():
        taps = taps_of(Holder(mha, call), *inputs)
        out, weights = mha(*inputs, attn_mask=mask, need_weights=True, average_attn_weights=False)
    out = out if mha.batch_first else out.transpose(0, 1)
    assert taps["q"].shape == (2, 5, 4, 4) and taps["pattern"].shape == (2, 4, 5, 5 if packed else 7)
    torch.testing.assert_close(taps["pattern"], weights, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(mha.out_proj(merge(taps["heads"])), out, atol=1e-5, rtol=1e-4)
    # the heads are softmax(q k^T / sqrt(d)) v of the taps' own q, k, v
    q, k, v = (taps[t].transpose(1, 2) for t in "qkv")
    scores = q @ k.transpose(-2, -1) / 4**0.5
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    torch.testing.assert_close((scores.softmax(-1) @ v).transpose(1, 2), taps["heads"], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("qk_norm", [False, True])
def test_timm_attention_q_k_v_are_its_own(qk_norm):
    from timm.layers import Attention

    torch.manual_seed(0)
    attn = Attention(16, num_heads=4, qkv_bias=True, qk_norm=qk_norm, norm_layer=nn.LayerNorm).eval()
    if qk_norm:
        nn.init.normal_(attn.q_norm.weight, 1.0, 0.5)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        taps = taps_of(Holder(attn, lambda module, x: module(x)), x)
        out = attn(x)
        # timm's own explicit path: what its fused attention computes
        q, k, _ = attn.qkv(x).reshape(2, 5, 3, 4, 4).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = attn.q_norm(q), attn.k_norm(k)
        weights = (q * attn.scale @ k.transpose(-2, -1)).softmax(-1)
    torch.testing.assert_close(taps["q"], q.transpose(1, 2))
    torch.testing.assert_close(taps["pattern"], weights, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(attn.proj(attn.norm(merge(taps["heads"]))), out, atol=1e-5, rtol=1e-4)


def test_hugging_face_attention_q_k_v_are_its_own():
    import transformers

    torch.manual_seed(0)
    config = transformers.ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=4, intermediate_size=32,
                                    image_size=16, patch_size=4, attn_implementation="eager")
    attn = transformers.ViTModel(config).layers[0].attention.eval()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        taps = taps_of(Holder(attn, lambda module, x: module(x)[0]), x)
        out, weights = attn(x)
    torch.testing.assert_close(taps["pattern"], weights, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(attn.o_proj(merge(taps["heads"])), out, atol=1e-5, rtol=1e-4)


def test_pattern_rows_sum_to_one_and_gradients_reach_the_image():
    torch.manual_seed(0)
    net = tiny_vit().build().eval().requires_grad_(False)
    image = torch.rand(2, 3, 16, 16, requires_grad=True)
    layer = "encoder.layers.encoder_layer_1.self_attention"
    acts = Probe(net, [f"{layer}.pattern", f"{layer}.heads"])(image)
    pattern = acts[f"{layer}.pattern"]
    assert pattern.shape == (2, 2, 17, 17) and acts[f"{layer}.heads"].shape == (2, 17, 2, 8)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(2, 2, 17))
    acts[f"{layer}.heads"][:, :, 1, 3].sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0


def test_taps_change_nothing_and_cost_nothing_unheard(monkeypatch):
    torch.manual_seed(0)
    plain = tiny_vit().load().eval()
    tapped = attach_head_taps(tiny_vit().load().eval())
    tapped.load_state_dict(plain.state_dict())
    assert list(tapped.state_dict()) == list(plain.state_dict())  # the taps hold no weights
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(tapped(x), plain(x))
    assert attach_head_taps(tapped) is tapped and len(attention_heads(tapped)) == 2  # idempotent
    assert len(tapped.encoder.layers.encoder_layer_0.self_attention._forward_hooks) == 1
    calls = []
    real = MultiheadAttentionSource.project
    monkeypatch.setattr(MultiheadAttentionSource, "project", lambda *a: calls.append(1) or real(*a))
    with torch.no_grad():
        tapped(x)  # no hook on a tap: the attention is not recomputed
        assert calls == []
        Probe(tapped, ["encoder.layers.encoder_layer_0.self_attention.q"])(x)
    assert calls == [1]  # recomputed where a tap is heard, and the forward stopped there


# --- the adapters name and lay out the taps -------------------------------------------------


def test_torchvision_layers_list_the_taps_with_their_layouts():
    rows = {i.name: i for i in lightning_featvis.layers(tiny_vit())}
    layer = "encoder.layers.encoder_layer_1.self_attention"
    assert rows[f"{layer}.q"].shape == (1, 17, 2, 8) and rows[f"{layer}.q"].layout == "heads (1 class token, 2 heads)"
    assert rows[f"{layer}.pattern"].shape == (1, 2, 17, 17)
    assert rows[f"{layer}.pattern"].layout == "pattern (1 class token, 2 heads)"
    assert rows[f"{layer}.heads"].kind == "HeadTap"
    assert tiny_vit().layout(f"{layer}.v") == Layout("heads", prefix_tokens=1, heads=2)
    assert tiny_vit().layout("heads.head") == Layout("logits")  # the classifier is not a tap


def test_timm_and_hugging_face_adapters_lay_out_the_taps():
    from conftest import tiny_hf_vit_dir

    from lightning_featvis.models import HuggingFaceVision, TimmModel

    timm_vit = TimmModel("vit_tiny_patch16_224", model_kwargs={"img_size": 16, "patch_size": 4, "depth": 1,
                                                                  "num_classes": 5})
    assert timm_vit.layout("blocks.0.attn.k") == Layout("heads", prefix_tokens=1, heads=3)
    assert timm_vit.layout("blocks.0.attn.pattern") == Layout("pattern", prefix_tokens=1, heads=3)
    hf = HuggingFaceVision(tiny_hf_vit_dir("model"))
    assert hf.layout("layers.1.attention.heads") == Layout("heads", prefix_tokens=1, heads=2)
    assert hf.layout("layers.1.attention.pattern") == Layout("pattern", prefix_tokens=1, heads=2)
    acts = Probe(hf.build(), ["layers.1.attention.pattern"])(torch.rand(1, 3, 32, 32))
    assert acts["layers.1.attention.pattern"].shape == (1, 2, 17, 17)


class PlainAttentionNet(nn.Module):
    """A module of one's own: patch convolution, class token, one nn.MultiheadAttention, head."""

    def __init__(self) -> None:
        super().__init__()
        self.patches = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        tokens = self.patches(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1)
        return self.head(self.attention(tokens, tokens, tokens)[0][:, 0])


def test_a_plain_module_with_multihead_attention_gets_taps_while_it_is_used():
    module = PlainAttentionNet()
    adapter = AnyModule(module, image_size=16)
    assert adapter.layout("attention.q") == Layout("heads", prefix_tokens=1, heads=2)
    assert adapter.layout("attention.pattern") == Layout("pattern", prefix_tokens=1, heads=2)
    rows = {i.name: i for i in lightning_featvis.layers(module, image_size=16)}
    assert rows["attention.heads"].shape == (1, 17, 2, 4)
    assert not is_tapped(module)  # the user's module is given back as it came
    net = adapter.build()
    assert is_tapped(net) and pickle.loads(pickle.dumps(adapter)).layout("attention.k").heads == 2  # ddp_spawn
    adapter.release(net)
    assert not is_tapped(module) and "attention.q" not in dict(module.named_modules())
    assert not module.attention._forward_hooks
    lightning_featvis.render(module, ["attention.heads:head=1 neuron=2"], steps=2, image_size=16, logger=False,
                             enable_progress_bar=False)
    assert not is_tapped(module)


# --- the units --------------------------------------------------------------------------


def test_head_units_parse_and_name():
    assert parse_units("head=2") == [Unit(heads=(2,))]
    assert parse_units("head=2 neuron=5 patch=12") == [Unit(neurons=(5,), patches=(12,), heads=(2,))]
    assert parse_units("head=0-1") == [Unit(heads=(0,)), Unit(heads=(1,))]
    assert parse_units("head=1 from=12 to=3") == [Unit(patches=(12,), heads=(1,), keys=(3,))]
    assert parse_units("head=1 from=cls to=cls") == [Unit(patches=(), class_token=True, heads=(1,), keys=(),
                                                          key_class_token=True)]
    assert Unit(neurons=(5,), heads=(2,)).name == "head2_neuron5"
    assert Unit(patches=(12,), heads=(1,), keys=(3,)).name == "head1_from12_to3"
    assert Unit(patches=(), class_token=True, heads=(0, 1), keys=(), key_class_token=True).name == "heads0+1_fromcls_tocls"
    with pytest.raises(FeatvisError, match="no neurons"):
        parse_units("neuron=1 to=3")
    with pytest.raises(FeatvisError, match="head="):
        parse_units("class=1 head=0")


def test_head_sweeps_are_sized_from_the_layer():
    sizes = layer_sizes((1, 17, 8), HEADS)  # [B, 1+P, H*d] with H = 2, d = 4
    assert sizes == {"neurons": 8, "patches": 16, "heads": 2}
    assert parse_units("head=*", sizes) == [Unit(heads=(0,)), Unit(heads=(1,))]
    assert len(parse_units("head=1 neuron=*", sizes)) == 4  # the neurons of one head
    assert len(parse_units("neuron=*", sizes)) == 8  # without head=: all H*d
    assert len(parse_units("head=0 from=3 to=*", layer_sizes((1, 17, 34), PATTERN))) == 16
    with pytest.raises(FeatvisError, match="no heads"):
        parse_units("head=*", layer_sizes((1, 17, 8), Layout("tokens", prefix_tokens=1)))


def test_head_units_select_their_slice():
    acts = torch.randn(2, 17, 2, 4)  # [B, 1+P, H, d]
    assert torch.equal(select(acts, HEADS, Unit(heads=(1,))), acts[:, 1:, 1].flatten(1))
    assert torch.equal(select(acts, HEADS, Unit(heads=(1,), neurons=(3,), patches=(12,))), acts[:, 13, 1, 3:4])
    assert torch.equal(select(acts, HEADS, Unit(heads=(0,), neurons=(2,), class_token=True)), acts[:, :, 0, 2])
    # without head=, neurons count over all H*d: head 1's neuron 3 is neuron 7
    assert torch.equal(select(acts, HEADS, Unit(neurons=(7,))), acts[:, 1:, 1, 3])
    pattern = torch.randn(2, 2, 17, 17)  # [B, H, query, key]
    assert torch.equal(select(pattern, PATTERN, Unit(heads=(1,), patches=(12,), keys=(3,))), pattern[:, 1, 13, 4:5])
    assert torch.equal(select(pattern, PATTERN, Unit(heads=(0,), patches=(), class_token=True, keys=(),
                                                     key_class_token=True)), pattern[:, 0, 0, 0:1])
    # head=h from=i alone: the whole row, class key included
    assert torch.equal(select(pattern, PATTERN, Unit(heads=(1,), patches=(5,))), pattern[:, 1, 6])
    assert torch.equal(select(pattern, PATTERN, Unit(heads=(1,))), pattern[:, 1, 1:].flatten(1))


def test_wrong_head_units_name_the_valid_range():
    with pytest.raises(FeatvisError, match="head 2 is out of range .* it has 2 heads"):
        check_unit(Unit(heads=(2,)), HEADS, (1, 17, 8), "attn.heads")
    with pytest.raises(FeatvisError, match="of each of its 2 heads: valid neurons are 0-3"):
        check_unit(Unit(heads=(0,), neurons=(4,)), HEADS, (1, 17, 8))
    check_unit(Unit(neurons=(7,)), HEADS, (1, 17, 8))  # all H*d without head=
    with pytest.raises(FeatvisError, match="per-head layer"):
        check_unit(Unit(heads=(0,)), Layout("tokens", prefix_tokens=1), (1, 17, 8))
    with pytest.raises(FeatvisError, match="no neurons"):
        check_unit(Unit(heads=(0,), neurons=(1,)), PATTERN, (1, 17, 34))
    with pytest.raises(FeatvisError, match="to 16 is out of range"):
        check_unit(Unit(heads=(0,), keys=(16,)), PATTERN, (1, 17, 34))
    with pytest.raises(FeatvisError, match="attention pattern"):
        check_unit(Unit(heads=(0,), keys=(1,)), HEADS, (1, 17, 8))


def test_a_wrong_head_is_refused_before_the_render():
    from lightning_featvis.zoo.digits import DigitsViT

    with pytest.raises(FeatvisError, match="it has 4 heads"):
        lightning_featvis.render(DigitsViT(), ["encoder.layers.encoder_layer_3.self_attention.heads:head=4"],
                                 steps=1, logger=False)


# --- end to end ---------------------------------------------------------------------------


def test_rendering_a_head_unit_and_a_pattern_unit_raises_them():
    from lightning_featvis.zoo.digits import DigitsViT

    layer = "encoder.layers.encoder_layer_3.self_attention"
    targets = [f"{layer}.heads:head=1 neuron=3", f"{layer}.pattern:head=2 from=12 to=3"]
    first = lightning_featvis.render(DigitsViT(), targets, steps=1, logger=False, enable_progress_bar=False)
    later = lightning_featvis.render(DigitsViT(), targets, steps=8, logger=False, enable_progress_bar=False)
    assert [t.unit.name for t in later.targets] == ["head1_neuron3", "head2_from12_to3"]
    assert (later.activations > first.activations).all(), (first.activations, later.activations)
