"""Session layout of a user's engagement history (paper Section 2.3, "Session Encoding").

The latest k items, most recent first, are partitioned into g sessions of p items; each session becomes one token
sequence (the items' ``[SOS] text </s>`` rows packed back to back, no padding between them, so T5's relative positions
see a contiguous text) that the T5 encoder reads independently.
"""
from typing import NamedTuple

import torch


def recent_first(item_seq: torch.Tensor, item_seq_len: torch.Tensor, k: int) -> torch.Tensor:
    """Latest ``k`` items, most recent first, 0-padded at the end.

    Args:
        item_seq: [B, L] chronological (oldest first), 0-padded at the end.
        item_seq_len: [B] number of real items per row.

    Returns:
        [B, k] item ids.
    """
    steps = torch.arange(k, device=item_seq.device)  # [k]
    index = item_seq_len[:, None] - 1 - steps  # [B, k], position of the j-th most recent item
    valid = index >= 0
    picked = item_seq.gather(1, index.clamp(min=0, max=item_seq.size(1) - 1))  # [B, k]
    return picked.masked_fill(~valid, 0)


class PackedSessions(NamedTuple):
    """Sessions ready for one batched encoder call.

    tokens: [S, T] token ids of the S non-empty sessions; mask: [S, T] True at real tokens;
    starts: [S, p] position of each item's [SOS] in its session; 0 for padding items, so every entry indexes
    [0, T) even in the widest session of a batch when it is only partly filled (the caller masks padding items);
    owner: [S] index of the flat (user, session) slot, i.e. ``b * g + j``; n_slots: B * g.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    starts: torch.Tensor
    owner: torch.Tensor
    n_slots: int


def pack_sessions(history: torch.Tensor, session_size: int, item_tokens: torch.Tensor, item_lengths: torch.Tensor,
                  pad_id: int) -> PackedSessions:
    """Partition ``history`` [B, k] (recent first, 0-padded) into sessions of ``session_size`` items and pack each
    non-empty session's item tokens contiguously.

    Args:
        item_tokens: [n_items, L] ``[SOS] ... </s>`` rows, already cut to the item caps; item_lengths: [n_items].
    """
    batch, k = history.shape
    n_sessions = -(-k // session_size)  # g = ceil(k / p)
    padded = history.new_zeros(batch, n_sessions * session_size)
    padded[:, :k] = history
    slots = padded.view(batch * n_sessions, session_size)  # [B*g, p]
    owner = (slots != 0).any(dim=1).nonzero(as_tuple=True)[0]  # [S], padding sessions skipped
    items = slots[owner]  # [S, p]

    lengths = item_lengths[items] * (items != 0)  # [S, p]
    starts = lengths.cumsum(dim=1) - lengths  # exclusive prefix sums: each item's first position, [S, p]
    starts = starts.masked_fill(items == 0, 0)  # padding items: a valid index (their state is masked out)
    width = int(lengths.sum(dim=1).max()) if owner.numel() else 1
    offsets = torch.arange(item_tokens.size(1), device=history.device)  # [L]
    real = offsets < lengths[..., None]  # [S, p, L]
    session_index = torch.arange(items.size(0), device=history.device)[:, None, None].expand_as(real)
    positions = starts[..., None] + offsets  # [S, p, L]

    tokens = history.new_full((items.size(0), width), pad_id)
    tokens[session_index[real], positions[real]] = item_tokens[items][real]
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[session_index[real], positions[real]] = True
    return PackedSessions(tokens, mask, starts, owner, batch * n_sessions)
