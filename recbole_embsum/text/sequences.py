"""Token sequences made of several items' texts: "history text + candidate text" inputs of the candidate-aware
language-model recommenders (UNBERT's ``[CLS] candidate [SEP] history [SEP]``, UniTRec's ``<s> history`` encoder
input and ``</s> candidate`` decoder input).

Item texts are tokenised once into a padded table (:func:`build_item_rows`, one row per RecBole internal item id,
no special tokens unless a suffix is asked for). A batch's model inputs are then assembled on the tensors, without
Python loops over rows:

* :func:`pack_items` lays the rows of each batch row's items back to back (no padding between them), within a token
  budget, and records for every token which item it belongs to (``slot``) and its position inside that item
  (``local``).
* :func:`special` is a single special token per row.
* :func:`concat` joins such pieces row by row, again without padding in between, and records which piece each token
  came from (``part``), from which a model derives its token types, segment ids or item-local attention.

Everything is right-padded and carries a ``mask`` (True at real tokens), so a row's tokens never depend on the other
rows of its batch.
"""
from typing import Dict, List, NamedTuple, Optional, Sequence, Union

import torch

from .items import ordered_records, pad_rows, render_items, tokenize_rows


class Segments(NamedTuple):
    """Right-padded token rows with their provenance; all fields are [B, W].

    tokens: token ids (pad id, or 0 before :func:`concat`, at padding); mask: True at real tokens;
    slot: index of the item a token belongs to within its piece (0 for special tokens and padding);
    local: position of the token inside its item (0 for special tokens and padding);
    part: index of the piece of a :func:`concat` the token came from (0 before concatenation; -1 at padding after).
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    slot: torch.Tensor
    local: torch.Tensor
    part: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        """Real tokens per row, [B]."""
        return self.mask.sum(dim=1)


class ItemRows(NamedTuple):
    """Every item's tokens: ``tokens`` [n_items, T] (pad id after each row), ``lengths`` [n_items], and ``texts``, the
    rendered text of each item (index = internal item id; "" for the padding item 0)."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    texts: List[str]


def build_item_rows(item_tokens: Sequence[str], texts: Dict[str, dict], text_path: str, tokenizer, template: str,
                    title_max_tokens: int, abstract_max_tokens: int, suffix: Sequence[int] = ()) -> ItemRows:
    """Tokenise every item once: row i is the rendered text of RecBole internal id i (title and abstract cut to their
    caps, ``text/items.py``) followed by the ``suffix`` token ids; the padding item (id 0) is an empty row.

    Args:
        item_tokens: ``dataset.field2id_token["item_id"]``.
        texts: raw item id -> record (``load_item_texts(text_path)``).
        template: e.g. ``"{title}"``; fields as in ``fill_template``.
        suffix: token ids closing each item (UniTRec: ``</s>``); none by default.

    Raises:
        ValueError: naming ``text_path`` when dataset items have no text record.
    """
    records = ordered_records(item_tokens, texts, text_path)[1:]
    rendered = [""] + render_items(records, template, tokenizer, title_max_tokens, abstract_max_tokens)
    rows = [[]] + [row + list(suffix) for row in tokenize_rows(rendered[1:], tokenizer, "tokenizing items")]
    return ItemRows(*pad_rows(rows, tokenizer.pad_token_id), rendered)


def pack_items(items: torch.Tensor, table: torch.Tensor, lengths: torch.Tensor,
               budget: Union[int, torch.Tensor, None] = None) -> Segments:
    """The token rows of ``items`` laid back to back per batch row, in the given order, cut at ``budget`` tokens.

    Args:
        items: [B, L] item ids (0 = no item: contributes no token).
        table: [n_items, T] token rows (:func:`build_item_rows`); lengths: [n_items].
        budget: at most this many tokens per row (an int, or [B] per row); the item that crosses it is cut there,
            the items after it are dropped. None = no limit.

    Returns:
        :class:`Segments` of width max(tokens kept in a row) (0 when no row has a token).
    """
    batch = items.size(0)
    if items.size(1) == 0:
        empty = items.new_zeros(batch, 0)
        return Segments(empty, empty.bool(), empty, empty, empty)
    item_lengths = lengths[items] * (items != 0)  # [B, L]
    ends = item_lengths.cumsum(dim=1)  # [B, L] exclusive end of each item
    total = ends[:, -1]  # [B]
    if budget is not None:
        total = torch.minimum(total, torch.as_tensor(budget, device=items.device).clamp(min=0).expand_as(total))
    width = int(total.max()) if batch else 0
    positions = torch.arange(width, device=items.device)[None, :].expand(batch, -1).contiguous()  # [B, W]
    mask = positions < total[:, None]
    slot = torch.searchsorted(ends, positions, right=True).clamp(max=items.size(1) - 1)  # [B, W]
    local = (positions - (ends - item_lengths).gather(1, slot)).masked_fill(~mask, 0)  # [B, W]
    tokens = table[items.gather(1, slot), local.clamp(max=table.size(1) - 1)].masked_fill(~mask, 0)
    return Segments(tokens, mask, slot.masked_fill(~mask, 0), local, torch.zeros_like(slot))


def special(token_id: int, batch: int, device: Optional[torch.device] = None) -> Segments:
    """One token ``token_id`` per row: :class:`Segments` of width 1."""
    tokens = torch.full((batch, 1), int(token_id), dtype=torch.long, device=device)
    zeros = torch.zeros_like(tokens)
    return Segments(tokens, torch.ones_like(tokens, dtype=torch.bool), zeros, zeros, zeros)


def concat(pieces: Sequence[Segments], pad_id: int, max_tokens: Optional[int] = None) -> Segments:
    """Join ``pieces`` row by row, each row's real tokens back to back (padding only at the end); ``part`` is the
    index of the piece in ``pieces`` (-1 at padding) and padding tokens become ``pad_id``.

    Args:
        max_tokens: cut each row after this many tokens (None: keep all).
    """
    fields = {name: torch.cat([getattr(piece, name) for piece in pieces], dim=1) for name in Segments._fields}
    fields["part"] = torch.cat([torch.full_like(piece.part, index) for index, piece in enumerate(pieces)], dim=1)
    mask = fields["mask"]
    order = (~mask).to(torch.int8).sort(dim=1, stable=True).indices  # real tokens first, in their order: [B, W]
    width = int(mask.sum(dim=1).max()) if mask.numel() else 0
    if max_tokens is not None:
        width = min(width, max_tokens)
    order = order[:, :width]
    joined = {name: value.gather(1, order) for name, value in fields.items()}
    mask = joined["mask"]
    return Segments(joined["tokens"].masked_fill(~mask, pad_id), mask, joined["slot"].masked_fill(~mask, 0),
                    joined["local"].masked_fill(~mask, 0), joined["part"].masked_fill(~mask, -1))
