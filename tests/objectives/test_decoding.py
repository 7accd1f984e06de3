"""TokenDecoder on embeddings that are not rows of W: the pseudo-inverse reads mixtures back."""

from __future__ import annotations

import torch

from lightning_featvis.decoding import TokenDecoder


def correlated_rows() -> torch.Tensor:
    """W ``[4, 6]`` of full row rank: rows of norms ~2, ~2.6, ~8 and ~48, the large ones leaning
    on the small ones' directions (so a plain dot product favours them)."""
    u = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    return torch.stack([u[0], u[1], 3 * (u[1] + 0.5 * u[2]), 20 * (u[0] + 0.4 * u[1] + 0.6 * u[3])])


def test_pinv_scores_a_mixture_of_rows_by_its_coefficients():
    weight = correlated_rows()
    assert torch.linalg.matrix_rank(weight) == 4 and weight.norm(dim=1).max() > 10 * weight.norm(dim=1).min()
    decoder = TokenDecoder(weight)
    mixtures = torch.stack([0.7 * weight[0] + 0.3 * weight[1], 0.6 * weight[2] - 0.2 * weight[3]])
    expected = torch.tensor([[0.7, 0.3, 0.0, 0.0], [0.0, 0.0, 0.6, -0.2]])
    # W @ pinv(W) = I for full row rank: each token's score is its coefficient in the mixture
    torch.testing.assert_close(decoder.scores(mixtures), expected, atol=1e-4, rtol=0)
    assert decoder.decode(mixtures).tolist() == [0, 2]
    assert decoder.top_k(mixtures, 2)[0].tolist() == [0, 1]
    # a dot product with the rows would pick the long row 3 for the first mixture
    assert (mixtures[0] @ weight.T).argmax().item() == 3
    # batched [..., D] embeddings score the same
    torch.testing.assert_close(decoder.scores(mixtures[None]), expected[None], atol=1e-4, rtol=0)


def test_a_restricted_vocabulary_keeps_the_pinv_scores_of_its_tokens():
    weight = correlated_rows()
    decoder = TokenDecoder(weight, allowed=[1, 2])
    scores = decoder.scores(0.7 * weight[0] + 0.3 * weight[1])
    assert torch.isinf(scores[[0, 3]]).all() and (scores[[0, 3]] < 0).all()
    torch.testing.assert_close(scores[[1, 2]], torch.tensor([0.3, 0.0]), atol=1e-4, rtol=0)
    assert decoder.decode(0.7 * weight[0] + 0.3 * weight[1]).item() == 1  # token 0 is not allowed
