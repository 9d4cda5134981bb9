"""Training objectives: NCE over impression negatives (shared by the content models; EmbSum's Eq. (5)) and EmbSum's
summary loss (Eq. (1)).

A training row is a click with the non-clicked items of its impression in ``neg_items`` (the data contract in
docs/design.md); :func:`impression_candidates` draws K of them per click and :func:`nce_loss` scores the click
against them.
"""
from typing import Mapping, Tuple

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
NEG_ITEMS_FIELD = "neg_items"
SUMMARY_REDUCTIONS = ("mean", "sum")


def draw_negatives(neg_items: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Draw ``k`` training negatives per row from the non-zero entries of ``neg_items`` [B, L] (0 = padding), anew at
    every step.

    Not to be confused with the converters' ``sample_negatives``, which decides once, per impression id, which of an
    impression's negatives are stored in the ``.train.inter`` file; this draws from what was stored.

    Rows with at least ``k`` negatives get ``k`` distinct ones; rows with fewer get all of them plus draws with
    replacement. Uses torch's global RNG, so it is deterministic under ``torch.manual_seed``.

    Returns:
        ([B, k] item ids, [B, k] validity); rows without any negative are all-invalid (ids 0).
    """
    batch, width = neg_items.shape
    if width == 0:
        empty = neg_items.new_zeros(batch, k)
        return empty, empty.bool()
    real = neg_items != 0  # [B, L]
    count = real.sum(dim=1, keepdim=True)  # [B, 1]
    keys = torch.rand(batch, width, device=neg_items.device).masked_fill(~real, 2.0)
    order = keys.argsort(dim=1)  # real entries first, in random order: [B, L]
    steps = torch.arange(k, device=neg_items.device)[None, :]  # [1, k]
    redraw = (torch.rand(batch, k, device=neg_items.device) * count).long()  # uniform in [0, count)
    slot = torch.where(steps < count, steps, redraw).clamp(max=width - 1)  # [B, k]
    valid = (count > 0).expand(batch, k)
    picked = neg_items.gather(1, order.gather(1, slot))  # [B, k]
    return picked.masked_fill(~valid, 0), valid


def impression_negatives_count(config, model_name: str) -> int:
    """``train_neg_num`` (K negatives per click, drawn from the click's impression), checked: at least 1, and no
    RecBole negative sampling (which would add sampled items as extra clicks)."""
    k = config["train_neg_num"]
    if k is None or k < 1:
        raise ValueError(f"{model_name} needs train_neg_num >= 1 (negatives per click), got {k}")
    sampling = config["train_neg_sample_args"] or {}
    if sampling.get("distribution", "none") != "none":
        raise ValueError(f"{model_name} draws its training negatives from each click's impression (neg_items, "
                         f"train_neg_num={k}); RecBole's negative sampling would add sampled items as extra clicks: "
                         f"leave train_neg_sample_args unset (or set it to ~)")
    return k


def impression_candidates(interaction: Mapping[str, torch.Tensor], item_field: str, k: int,
                          model_name: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """The clicked item and ``k`` of its impression's negatives for each training row.

    Args:
        interaction: a RecBole training batch with ``item_field`` [B] and ``neg_items`` [B, L_neg] (0-padded).
        model_name: named in the error when the batch has no ``neg_items``.

    Returns:
        ([B, 1 + k] item ids, column 0 the click; [B, k] validity of the negatives, as :func:`nce_loss` takes it).
    """
    if NEG_ITEMS_FIELD not in interaction:
        raise KeyError(f"{model_name} training batches need '{NEG_ITEMS_FIELD}' (impression negatives); "
                       f"load it via the dataset yaml's load_col and alias_of_item_id")
    negatives, valid = draw_negatives(interaction[NEG_ITEMS_FIELD], k)  # [B, k]
    return torch.cat([interaction[item_field][:, None], negatives], dim=1), valid


def nce_loss(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Eq. (5): -log(exp(s+) / (exp(s+) + sum_j exp(s-_j))), averaged over rows.

    Args:
        scores: [B, 1 + K], column 0 the clicked item, columns 1.. the negatives.
        valid: [B, K] False for negatives to leave out of the denominator.
    """
    mask = torch.cat([valid.new_ones(valid.size(0), 1), valid], dim=1)
    logits = scores.float().masked_fill(~mask, float("-inf"))
    target = torch.zeros(scores.size(0), dtype=torch.long, device=scores.device)
    return F.cross_entropy(logits, target)


class LossParts(tuple):
    """The weighted parts of a training objective (their sum is what is minimised, e.g. Eq. (6): ``(L_NCE,
    lambda * L_sum)``) with ``logged``, the same parts unweighted (``(L_NCE, L_sum)``), which a trainer reports.

    A plain tuple to RecBole's ``Trainer`` (which sums the parts), so the objective is the same under either trainer.
    """

    def __new__(cls, parts, logged):
        if len(parts) != len(logged):
            raise ValueError(f"LossParts needs as many logged values as parts, got {len(logged)} for {len(parts)}")
        obj = super().__new__(cls, parts)
        obj.logged = tuple(logged)
        return obj


def summary_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Eq. (1): negative log-likelihood of the summary tokens under teacher forcing.

    Args:
        logits: [B, T, V] decoder logits; labels: [B, T] target ids, ``IGNORE_INDEX`` where there is no token
            (padding, or a user without a summary).
        reduction: "mean" averages over all summary tokens of the batch (Eq. (1) divided by the summary length,
            as Hugging Face's T5 ``labels`` loss); "sum" is Eq. (1) as printed (sum over a user's tokens),
            averaged over the users that have a summary.

    Returns:
        A scalar; zero when no row has a summary.
    """
    if reduction not in SUMMARY_REDUCTIONS:
        raise ValueError(f"summary_loss_reduction must be one of {SUMMARY_REDUCTIONS}, got {reduction!r}")
    has_tokens = labels != IGNORE_INDEX  # [B, T]
    if not has_tokens.any():
        return logits.new_zeros((), dtype=torch.float32)
    token_nll = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX,
                                reduction="none")  # [B, T]
    if reduction == "mean":
        return token_nll.sum() / has_tokens.sum()
    users = has_tokens.any(dim=1)
    return token_nll.sum(dim=1)[users].mean()
