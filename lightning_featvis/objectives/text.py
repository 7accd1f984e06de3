"""Sentence reconstruction: find input embeddings whose layer output matches a sentence's."""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable

from lightning_featvis.callbacks.text_report import ReportsText
from lightning_featvis.decoding import TokenDecoder
from lightning_featvis.directions import DirectionForm, DirectionSets
from lightning_featvis.errors import FeatvisError
from lightning_featvis.models.text import TextModel
from lightning_featvis.objectives.base import VisualizationObjective
from lightning_featvis.objectives.reconstruction import Distance, output_distance
from lightning_featvis.params.embeddings import EmbeddingSequence
from lightning_featvis.plan import TEXT_RESULTS, RunData, RunRequest
from lightning_featvis.probe import Probe
from lightning_featvis.schedule import Octave
from lightning_featvis.seeding import derive_seed, run_seed
from lightning_featvis.targets import Target
from lightning_featvis.units import as_tokens, check_unit, select


class TextReconstructionObjective(VisualizationObjective, ReportsText):
    """Gradient descent on input embeddings ``e_g`` ``[T, D]`` so that a layer's output
    ``O_l(e_g)`` matches ``O_l(e)`` of a sentence's own embeddings ``e`` (the seed texts'
    experiments 16-17, see the experiments page); the embeddings are the run's only parameter, as the image is for vision.

    The sentences come from :class:`~lightning_featvis.data.SentenceTargets`; each target is a
    layer's unit for one sentence (``transformer.h.0:all``: block 1's whole output;
    ``lm_head:all``: the LM head's logits; ``...:patch=[0-3]``: the first four tokens). The
    probe stops the forward pass after the target layer (early exit), as for images. Sentences
    of different lengths share a group through an attention mask; a target's loss reads only
    its own tokens.

    Results (:meth:`report`, written by :class:`~lightning_featvis.callbacks.TextReport`): the
    tokens decoded from ``e_g``, the token recovery rate, the seeds' accuracy criterion and,
    for causal LMs, whether the decoded text gets the same next token as the sentence.

    Args:
        network: the text model (:class:`~lightning_featvis.models.text.TextModel`).
        layer: default layer for targets that name none.
        distance: ``l1`` (the seeds), ``l2`` or ``cos`` (``1 - cos``, item 17's variant).
        start: ``noise`` (the seeds) or ``mix``: ``(1 - mix) * noise + mix * e``.
        mix: the sentence's share of a ``mix`` start.
        criterion_noise: standard deviation of ``e' = e + N(0, criterion_noise)`` in the
            criterion ``||O(e_g) - O(e)|| < ||O(e') - O(e)||`` (the seeds: 1/20).
        top_k: how many candidate tokens the report lists per position.
        vocabulary: restrict decoding to the tokens of these words (``None``: every token).
        directions: named direction sets for ``direction=NAME[ROW]`` units, as
            :class:`~lightning_featvis.objectives.NeuronObjective`'s: the target then matches
            the sentence's tokens projected on that direction (an SAE latent's or a probe's
            reading of the sentence) instead of their neurons.
        direction_form: ``dot``, ``cosine`` or ``cossim`` (see :mod:`lightning_featvis.directions`).
        cossim_pow: the power of the ``cossim`` form.
        octaves: steps and learning-rate ramp; default 500 steps, lr 2 -> 0.2 (the seeds' plain
            gradient descent). Octave sizes must stay unset (a sentence has one length).
        param: the embeddings (default :class:`EmbeddingSequence`: noise at the scale of the
            model's token embeddings).
        optimizer: default ``SGD(lr=1.0)``, scaled by the octave's ``lr`` ramp.
    """

    def __init__(
        self,
        network: TextModel,
        layer: str | None = None,
        distance: Distance = "l1",
        start: Literal["noise", "mix"] = "noise",
        mix: float = 0.5,
        criterion_noise: float = 1 / 20,
        top_k: int = 5,
        vocabulary: list[str] | None = None,
        directions: dict[str, str] | None = None,
        direction_form: DirectionForm = "dot",
        cossim_pow: float = 1.0,
        octaves: list[Octave] | None = None,
        param: EmbeddingSequence | None = None,
        optimizer: OptimizerCallable | None = None,
    ) -> None:
        super().__init__(network=network, octaves=octaves or [Octave(steps=500, lr=(2.0, 0.2))],
                         param=param if param is not None else EmbeddingSequence(), optimizer=optimizer)
        self.layer, self.distance, self.start, self.mix = layer, distance, start, mix
        self.criterion_noise, self.top_k, self.vocabulary = criterion_noise, top_k, vocabulary
        self.directions = DirectionSets(directions, direction_form, cossim_pow)
        self.sentence_ids: list[list[int]] = []
        self._references: dict[tuple[int, str], torch.Tensor] = {}
        self._decoder: TokenDecoder | None = None

    #: TextReport's folder and table: a rerun of the same config takes finished targets over
    results = TEXT_RESULTS

    @property
    def default_layer(self) -> str | None:
        return self.layer

    # --- sentences and their embeddings ----------------------------------------------------

    @property
    def embedding_matrix(self) -> torch.Tensor:
        return self.network.embedding_matrix(self.build_network())

    def read_sentences(self, sentences: tuple[str, ...]) -> None:
        """Tokenize the data module's sentences (once)."""
        if self.sentence_ids:
            return
        if not sentences:
            raise FeatvisError("the text objective takes its sentences from data: "
                               "{class_path: lightning_featvis.data.SentenceTargets, init_args: {sentences: [...]}}")
        self.sentence_ids = [self.network.encode(text) for text in sentences]

    def embed(self, ids: list[int]) -> torch.Tensor:
        """The input embeddings ``[1, L, D]`` of token ids ``ids`` (no gradient)."""
        weight = self.embedding_matrix
        return weight[torch.tensor([ids], device=weight.device)].detach()

    def sentence_embeddings(self, index: int) -> torch.Tensor:
        """Sentence ``index``'s own input embeddings ``e`` ``[1, L, D]``."""
        return self.embed(self.sentence_ids[index])

    def token_count(self, target: Target) -> int:
        return len(self.sentence_ids[target.sentence])

    def run_request(self, data: RunData) -> RunRequest:
        # the sentences size ``*`` (the shortest one's tokens), so they are read first
        self.read_sentences(data.sentences)
        return super().run_request(data)

    def configure_input(self) -> None:
        """The embeddings' width D is the model's, their length T the longest sentence's."""
        weight = self.embedding_matrix
        self.param.width, self.param.length = weight.shape[1], max(len(ids) for ids in self.sentence_ids)
        if self.param.std is None:
            self.param.scale = float(weight.std())

    def setup(self, stage: str) -> None:
        super().setup(stage)
        self._decoder = None

    def reset_inputs(self, seeds: list[int | None]) -> None:
        super().reset_inputs(seeds)
        if self.start == "noise":
            return
        with torch.no_grad():
            embeddings = self.param.embeddings
            for i, target in enumerate(self.targets):
                if target is not None:
                    e = self.sentence_embeddings(target.sentence)[0].to(embeddings)
                    embeddings[i, : len(e)] = (1 - self.mix) * embeddings[i, : len(e)] + self.mix * e

    # --- the forward pass ------------------------------------------------------------------

    def attention_mask(self, rows: int) -> torch.Tensor:
        """``[rows, T]``: 1 on each group slot's own tokens, 0 on the padding after them (rows
        are the group's slots, target-major, ``rows / G`` copies each)."""
        size = self.param.size
        lengths = [len(self.sentence_ids[t.sentence]) if t is not None else size for t in self.targets]
        copies = rows // len(lengths)
        mask = torch.zeros(len(lengths), size, dtype=torch.long, device=self.device)
        for i, length in enumerate(lengths):
            mask[i, :length] = 1
        return mask.repeat_interleave(copies, dim=0)

    def run(self, embeddings: torch.Tensor, layers: list[str], mask: torch.Tensor | None = None,
            stop: bool = True) -> dict[str, torch.Tensor]:
        """Outputs of ``layers`` for input embeddings ``[B, T, D]`` (and an attention mask
        ``[B, T]``); stops after the last layer unless ``stop`` is False."""
        key = (tuple(layers), stop)
        if key not in self._probes:
            self._probes[key] = Probe(self.build_network(), layers, stop=stop)
        kwargs = {} if mask is None else {"attention_mask": mask}
        return self._probes[key](inputs_embeds=embeddings, **kwargs)

    def activations(self, view: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        return self.run(view, layers, self.attention_mask(view.shape[0]))

    def select(self, acts: dict[str, torch.Tensor], target: Target) -> torch.Tensor:
        length = len(self.sentence_ids[target.sentence])
        layout = self.network.layout(target.layer)
        if target.unit.direction is not None:  # [B, t]: each token projected on the direction
            return self.directions.select(acts[target.layer][:, :length], layout, target.unit)
        return select(acts[target.layer][:, :length], layout, target.unit)

    def reference(self, sentence: int, layer: str) -> torch.Tensor:
        """Sentence ``sentence``'s own output of ``layer`` ``[1, L, ...]`` (computed once)."""
        key = (sentence, layer)
        if key not in self._references:
            with torch.no_grad():
                self._references[key] = self.run(self.sentence_embeddings(sentence), [layer])[layer].float()
        return self._references[key]

    def loss(self, selected: torch.Tensor, target: Target) -> torch.Tensor:
        wanted = self.select({target.layer: self.reference(target.sentence, target.layer)}, target)
        return output_distance(selected, wanted, self.distance)

    # --- checks before the first step ------------------------------------------------------

    def unit_sizes(self, layer: str) -> dict[str, int]:
        """``neuron=*``: the layer's width; ``patch=*``: the shortest sentence's tokens."""
        shortest = min(range(len(self.sentence_ids)), key=lambda i: len(self.sentence_ids[i]))
        with torch.no_grad():
            acts = self.run(self.sentence_embeddings(shortest), [layer])[layer]
        _, tokens, width = as_tokens(acts, self.network.layout(layer)).shape
        return self.directions.with_sizes({"neurons": width, "patches": tokens})

    def check_targets(self, targets: tuple[Target, ...]) -> None:
        layers = sorted({t.layer for t in targets})
        for sentence in sorted({t.sentence for t in targets}):
            with torch.no_grad():
                acts = self.run(self.sentence_embeddings(sentence), layers, stop=False)
            for target in (t for t in targets if t.sentence == sentence):
                tokens = as_tokens(acts[target.layer], self.network.layout(target.layer))
                check_unit(target.unit, self.network.layout(target.layer), tuple(tokens.shape), target.layer)
                if target.unit.direction is not None:
                    self.directions.check(*target.unit.direction, tokens.shape[-1], target.layer)

    # --- results -----------------------------------------------------------------------------

    def configure_callbacks(self) -> list[L.Callback]:
        from lightning_featvis.callbacks import TextReport

        present = {type(cb) for cb in self.trainer.callbacks}
        return [] if any(issubclass(p, TextReport) for p in present) else [TextReport()]

    @property
    def decoder(self) -> TokenDecoder:
        """Decodes embeddings into tokens (within :attr:`vocabulary` when one is given)."""
        if self._decoder is None:
            allowed = None
            if self.vocabulary is not None:
                tokenizer = self.network.tokenizer()
                allowed = [i for word in self.vocabulary for i in tokenizer(word, add_special_tokens=False)["input_ids"]]
                if not allowed:
                    raise FeatvisError(f"vocabulary {self.vocabulary!r} gives no tokens")
            self._decoder = TokenDecoder(self.embedding_matrix, allowed)
        return self._decoder

    def next_token(self, ids: list[int]) -> int | None:
        """The causal LM's most likely next token after ``ids`` (None without an LM head)."""
        if self.network.task != "causal-lm":
            return None
        with torch.no_grad():
            logits = self.run(self.embed(ids), [""], stop=False)[""]
        return int(logits[0, -1].argmax())

    def report(self, embeddings: torch.Tensor, targets: list[Target]) -> list[dict]:
        """What each finished target recovered, one dict per target, from its final embeddings
        ``[N, T, D]``:

        - ``sentence``, ``recovered`` (pinv decoding), ``recovered_cosine`` (nearest embedding);
        - ``token_recovery`` and ``token_recovery_cosine``: the fraction of the sentence's
          tokens decoded exactly (special tokens such as ``[CLS]`` left out when there are
          others);
        - ``top_k``: the ``top_k`` pinv candidates per position, ``a/b/c`` joined by `` | ``;
        - ``distance`` (``O(e_g)`` to ``O(e)``), ``noise_distance`` (``O(e')`` to ``O(e)``,
          ``e' = e + N(0, criterion_noise)``, seeded per target) and ``accurate`` (the former
          is smaller);
        - ``next_token`` and ``next_token_recovered``: a causal LM's next token after the
          sentence and after the recovered text; ``next_token_agrees`` (empty without a head).
        """
        tokenizer = self.network.tokenizer()
        special = self.network.special_tokens()
        sentences = self.plan.data.sentences
        word = (lambda token: "" if token is None else tokenizer.decode([token]))
        rows = []
        for e_g, target in zip(embeddings, targets):
            ids = self.sentence_ids[target.sentence]
            e_g = e_g[: len(ids)].to(self.device)
            counted = [i for i, t in enumerate(ids) if t not in special] or list(range(len(ids)))
            decoded = {m: self.decoder.decode(e_g, m).tolist() for m in ("pinv", "cosine")}
            recovery = {m: sum(decoded[m][i] == ids[i] for i in counted) / len(counted) for m in decoded}
            top = self.decoder.top_k(e_g, self.top_k).tolist()
            distance, noise_distance = self.criterion(e_g, target)
            original, recovered = self.next_token(ids), self.next_token(decoded["pinv"])
            rows.append(dict(
                sentence=sentences[target.sentence],
                recovered=tokenizer.decode(decoded["pinv"]),
                recovered_cosine=tokenizer.decode(decoded["cosine"]),
                token_recovery=recovery["pinv"],
                token_recovery_cosine=recovery["cosine"],
                top_k=" | ".join("/".join(tokenizer.convert_ids_to_tokens(c)) for c in top),
                distance=distance,
                noise_distance=noise_distance,
                accurate=distance < noise_distance,
                next_token=word(original),
                next_token_recovered=word(recovered),
                next_token_agrees="" if original is None else original == recovered,
            ))
        return rows

    def criterion(self, e_g: torch.Tensor, target: Target) -> tuple[float, float]:
        """The seeds' accuracy criterion for embeddings ``e_g`` ``[L, D]``: the distance of
        ``O(e_g)`` and of ``O(e + N(0, criterion_noise))`` to ``O(e)`` over the target's unit."""
        e = self.sentence_embeddings(target.sentence)
        generator = torch.Generator().manual_seed(derive_seed(run_seed(), "criterion", target.key))
        noisy = e + (torch.randn(e.shape, generator=generator) * self.criterion_noise).to(e)
        with torch.no_grad():
            acts = self.run(torch.cat([e_g.unsqueeze(0).to(e), noisy]), [target.layer])
        distance, noise_distance = self.loss(self.select(acts, target).float(), target).tolist()
        return distance, noise_distance
