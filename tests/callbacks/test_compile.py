"""CompileNetwork: the frozen network's target-free parts run compiled, the images are eager
mode's within rounding, and the user's module comes back uncompiled."""

from __future__ import annotations

import torch

from lightning_featvis import CompileNetwork, render
from lightning_featvis.callbacks.compile import compile_network, uncompile

L0 = "encoder.layers.encoder_layer_0"
TARGETS = [f"{L0}:neuron=0-3", f"{L0}.mlp.1:neuron=5", "heads.head:class=1"]


def test_compiled_parts_are_those_holding_no_layer(tiny):
    net = tiny.build()
    compiled = {name for name, module in net.named_modules() if module in compile_network(net, [L0, f"{L0}.mlp.1"])}
    assert "encoder.layers.encoder_layer_1" in compiled and "conv_proj" in compiled
    assert f"{L0}.ln_1" in compiled and f"{L0}.mlp.0" in compiled
    # the layers read, and everything above them, stay eager: their hooks come and go
    assert not compiled & {"", "encoder", "encoder.layers", L0, f"{L0}.mlp", f"{L0}.mlp.1"}
    uncompile(compile_network(net, [L0]))


def test_a_compiled_render_gives_eager_modes_images(tiny):
    from torch._dynamo.utils import counters

    counters.clear()
    eager = render(tiny, TARGETS, steps=8, logger=False, enable_progress_bar=False)
    module = tiny.build()
    compiled = render(module, TARGETS, steps=8, logger=False, enable_progress_bar=False, callbacks=[CompileNetwork()])
    assert counters["stats"]["unique_graphs"] > 0  # the compiler did run
    torch.testing.assert_close(compiled.images, eager.images, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(compiled.activations, eager.activations, rtol=1e-4, atol=1e-4)
    assert not any("forward" in m.__dict__ for m in module.modules())  # given back as it came
