"""Reading tokens back from input embeddings: the pseudo-inverse of the embedding matrix, or the
nearest token embedding by cosine, optionally within a restricted vocabulary."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Method = Literal["pinv", "cosine"]


class TokenDecoder:
    """Scores every vocabulary token for each embedding and keeps the best ``k``.

    - ``pinv``: ``e @ pinv(W)``, the seeds' ``argmax((e - e_pos) @ pinv(W_wte))``. Our
      embeddings are the model's ``inputs_embeds``, to which the model adds ``e_pos`` itself,
      so they already are ``e - e_pos``.
    - ``cosine``: the cosine similarity of ``e`` with every row of ``W``.

    Args:
        weight: the token embedding matrix ``W`` ``[V, D]``.
        allowed: token ids decoding may return (a restricted vocabulary); ``None``: all ``V``.
    """

    def __init__(self, weight: torch.Tensor, allowed: list[int] | None = None) -> None:
        weight = weight.detach().float()
        self.pinv = torch.linalg.pinv(weight)  # [D, V]
        self.unit_rows = F.normalize(weight, dim=1)  # [V, D]
        self.mask = None
        if allowed is not None:
            self.mask = torch.full((weight.shape[0],), float("-inf"), device=weight.device)
            self.mask[torch.tensor(sorted(set(allowed)), device=weight.device)] = 0.0

    def scores(self, embeddings: torch.Tensor, method: Method = "pinv") -> torch.Tensor:
        """Token scores ``[..., V]`` of embeddings ``[..., D]`` (``-inf`` outside the vocabulary)."""
        e = embeddings.float().to(self.pinv.device)
        scores = e @ self.pinv if method == "pinv" else F.normalize(e, dim=-1) @ self.unit_rows.T
        return scores if self.mask is None else scores + self.mask

    def top_k(self, embeddings: torch.Tensor, k: int = 5, method: Method = "pinv") -> torch.Tensor:
        """The ``k`` best token ids per embedding, best first, ``[..., k]``."""
        return self.scores(embeddings, method).topk(k, dim=-1).indices

    def decode(self, embeddings: torch.Tensor, method: Method = "pinv") -> torch.Tensor:
        """The best token id per embedding ``[...]``."""
        return self.top_k(embeddings, 1, method)[..., 0]
