"""Hugging Face vision models from the hub or a local directory: ViT, CLIP's vision tower,
DINOv2 (with registers), SigLIP, and any other ``AutoModel`` that takes ``pixel_values``.

The model itself is read as any module is (:class:`~lightning_featvis.models.AnyModule`): its
layers' layouts from one blank forward, its prefix tokens (class token, registers; none for
SigLIP) from the patch grid of its config. The normalisation comes from the model's image
processor config (``preprocessor_config.json``) when there is one. Each attention module
(``layers.i.attention`` of a ViT, ``...self_attn`` of CLIP and SigLIP) has the attention-head
layers ``.q``, ``.k``, ``.v``, ``.heads`` ``[B, T, H, d]`` and ``.pattern`` ``[B, H, T, T]``
(:mod:`lightning_featvis.models.attention`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from torch import nn

from lightning_featvis.models.any_module import AnyModule
from lightning_featvis.models.downloads import require_hub

Task = Literal["model", "classification"]
_FILES = ("config.json", "model.safetensors", "pytorch_model.bin")


class HuggingFaceVision(AnyModule):
    """A Hugging Face vision model by hub id or local directory (``from_pretrained``).

    Args:
        model: a hub id (``facebook/dinov2-small``, ``openai/clip-vit-base-patch32``,
            ``google/siglip-base-patch16-224``, ``google/vit-base-patch16-224``) or a local
            directory holding its ``config.json`` and weights.
        task: ``model`` (``AutoModel``: the encoder; of a CLIP or SigLIP checkpoint, the vision
            tower) or ``classification`` (``AutoModelForImageClassification``: class logits).
        pretrained: load the trained weights; ``False`` gives random weights of the same
            architecture (from its config alone).
        image_size: the input side, if the config has none.
        layout: layouts by layer name, for layers whose layout cannot be read.
        mean: the normalisation's per-channel mean (default: the image processor's).
        std: its per-channel std.
        model_name: name in file names and TensorBoard tags (default: the id's last part).
        training_data: the images the model was trained on, as an image source (a folder,
            ``hf:NAME``), for the recipes that adapt to the data (``auto``).
    """

    def __init__(self, model: str, task: Task = "model", pretrained: bool = True, image_size: int | None = None,
                 layout: dict | None = None, mean: tuple[float, float, float] | None = None,
                 std: tuple[float, float, float] | None = None, model_name: str | None = None,
                 training_data: str | None = None) -> None:
        # construction stays cheap (a config object): the model loads on first use
        self.source, self.task, self.pretrained = model, task, pretrained
        self.set_options(image_size, layout, mean, std, model_name or Path(model).name.replace("-", "_").lower(),
                         training_data)
        self._module: nn.Module | None = None
        self._processor: tuple[tuple, tuple] | None = None

    @property
    def module(self) -> nn.Module:
        """The model, loaded on first use."""
        if self._module is None:
            self._module = self._load()
            self._processor = self._processor_normalization()
        return self._module

    def _load(self) -> nn.Module:
        from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

        require_hub(self.source, _FILES, f"the Hugging Face model {self.source}",
                    f"On a machine with network access run `hf download {self.source} --local-dir DIR` "
                    "and pass model: DIR")
        auto = AutoModelForImageClassification if self.task == "classification" else AutoModel
        net = auto.from_pretrained(self.source) if self.pretrained else auto.from_config(AutoConfig.from_pretrained(self.source))
        # a CLIP or SigLIP checkpoint holds a text and a vision tower: images go to the vision one
        tower = net._modules.get("vision_model")
        return tower if self.task == "model" and tower is not None and "text_model" in net._modules else net

    def _processor_normalization(self) -> tuple[tuple, tuple] | None:
        from transformers import AutoImageProcessor

        try:
            processor = AutoImageProcessor.from_pretrained(self.source)
        except (OSError, ValueError):  # no preprocessor_config.json: the model type's defaults
            return None
        mean, std = processor.__dict__.get("image_mean"), processor.__dict__.get("image_std")
        return (tuple(mean), tuple(std)) if mean is not None and std is not None else None

    def read_normalization(self) -> tuple[tuple, tuple]:
        self.module  # noqa: B018 - loading reads the image processor too
        return self._processor or super().read_normalization()

    def __getstate__(self) -> dict:
        # ddp_spawn pickles adapters: each process loads the model again (from disk or the cache)
        state = super().__getstate__()
        state["_module"] = None
        return state
