"""Poly-attention (Humeau et al. 2019) as used by EmbSum for both UPE and CPE (paper Eq. (2), Section 2.4).

Each of the ``n_codes`` trainable context codes ``c_a`` attends over a set of vectors ``Z`` and returns one
aggregated vector:

    alpha_a = softmax[c_a tanh(Z W^f)^T] Z                                                    # Eq. (2)

For the User Poly-Embedding (UPE) ``Z`` holds the k history-item vectors plus the global user vector and there are
m codes; for the Content Poly-Embedding (CPE) ``Z`` is a candidate's encoder states, with n codes and the projection
called ``W^o`` in the paper. One module serves both.
"""
import torch
from torch import nn


class PolyAttention(nn.Module):
    """``n_codes`` context codes attending over a masked set of ``d_model`` vectors (Eq. (2)).

    Args:
        d_model: width ``d`` of the attended vectors (and of the outputs).
        n_codes: number of context codes (m for UPE, n for CPE).
        code_dim: width ``p`` of the codes ``c_a`` and of the projection ``W^f`` (``d x p``).
    """

    def __init__(self, d_model: int, n_codes: int, code_dim: int):
        super().__init__()
        if n_codes < 1 or code_dim < 1:
            raise ValueError(f"PolyAttention needs n_codes >= 1 and code_dim >= 1, got {n_codes} and {code_dim}")
        self.codes = nn.Parameter(torch.empty(n_codes, code_dim))  # rows c_a, [n_codes, p]
        self.proj = nn.Linear(d_model, code_dim, bias=False)  # W^f (W^o for CPE), [d, p]
        nn.init.normal_(self.codes, std=code_dim**-0.5)
        nn.init.xavier_uniform_(self.proj.weight)

    def code_logits(self, z: torch.Tensor) -> torch.Tensor:
        """The attention logits ``c_a tanh(Z W^f)^T`` of every code over ``z`` [B, T, d] -> [B, n_codes, T], unmasked
        (for callers that add a bias before the softmax, as MINER's category-aware weighting)."""
        keys = torch.tanh(self.proj(z))  # tanh(Z W^f): [B, T, p]
        return torch.einsum("ap,btp->bat", self.codes, keys)  # c_a tanh(Z W^f)^T: [B, n_codes, T]

    def forward(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Aggregate ``z`` [B, T, d] under ``mask`` [B, T] (True = real vector) into [B, n_codes, d].

        Every row must have at least one real vector.
        """
        logits = self.code_logits(z)  # [B, n_codes, T]
        logits = logits.masked_fill(~mask[:, None, :], torch.finfo(logits.dtype).min)
        weights = torch.softmax(logits, dim=-1)  # [B, n_codes, T]
        return weights @ z  # Eq. (2): alpha_a for every code, [B, n_codes, d]
