"""``PLMContentRecommender``: the item inputs of the content baselines whose news encoder is a pretrained language
model (NAML-PLM, MINER).

Instead of word ids, every item's title (cut to ``title_max_tokens`` subword tokens, dataset yaml), with the
family's special tokens and optionally a second text (``plm_pair_field``, e.g. the category: ``<s> title </s></s>
category </s>`` for RoBERTa), is tokenised once into a non-persistent ``[n_items, T]`` table; ``token_states`` runs
the PLM (``text/backbone.load_plm``: ``plm`` / ``plm_init`` / ``plm_config``) over the rows of a batch's distinct items.
Category ids per item (``item_category``) are kept for models with a category branch. Training, the history cut and
the evaluation cache (each item through the PLM once per evaluation pass) are ``ContentRecommender``'s.
"""
from typing import Optional, Sequence, Tuple

import torch

from recbole_embsum.text.backbone import load_plm
from recbole_embsum.text.features import category_ids
from recbole_embsum.text.items import build_plm_token_table

from .content import ContentRecommender

CORPUS_FIELDS = ("title", "abstract", "category", "subcategory")  # item text a scratch tokenizer is trained on


class PLMContentRecommender(ContentRecommender):
    """A ``ContentRecommender`` whose items are read by a Hugging Face PLM encoder (``plm_kind``)."""

    plm_kind = "encoder"  # load_plm kind; also tells the preflight that this model loads `plm`
    plm_pair_field: Optional[str] = None  # a second text field read after the title (None: the title alone)

    def build_item_inputs(self, config, records: Sequence[dict]) -> None:
        """``self.plm`` / ``self.tokenizer``; buffers ``item_tokens`` [n_items, T], ``item_token_lengths`` [n_items],
        ``item_category`` [n_items] (0 = none) and ``self.category_count`` (ids including 0)."""

        def corpus():  # what a scratch tokenizer is trained on (and its cache key hashes)
            return (str(record.get(field) or "") for record in records[1:] for field in CORPUS_FIELDS)

        self.plm, self.tokenizer = load_plm(config, corpus, self.plm_kind)
        missing = [role for role in ("cls_token", "sep_token", "pad_token") if getattr(self.tokenizer, role) is None]
        if missing:
            raise ValueError(f"{type(self).__name__}: the tokenizer of plm={config['plm']!r} has no "
                             f"{', '.join(missing)}; use an encoder with [CLS] / [SEP] / [PAD] tokens (BERT, RoBERTa)")
        if getattr(self.plm, "pooler", None) is not None:
            # BERT / RoBERTa's pooler (trained for next-sentence prediction) is never read here: dropping it keeps
            # every parameter in the graph (DDP needs that) and the checkpoint smaller.
            self.plm.pooler = None
        tokens, lengths = build_plm_token_table(records, self.tokenizer, "title", config["title_max_tokens"],
                                                self.plm_pair_field)
        self.register_buffer("item_tokens", tokens, persistent=False)  # [n_items, T]
        self.register_buffer("item_token_lengths", lengths, persistent=False)  # [n_items]
        categories, self.category_count = category_ids(records, "category")
        self.register_buffer("item_category", categories, persistent=False)  # [n_items]

    @property
    def plm_hidden_size(self) -> int:
        return self.plm.config.hidden_size

    def token_states(self, item_ids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The PLM's last hidden states of the items' token rows: ``item_ids`` [N] -> ([N, T, H], mask [N, T]),
        T the longest row among them (position 0 holds ``[CLS]`` / ``<s>``)."""
        lengths = self.item_token_lengths[item_ids]  # [N]
        width = int(lengths.max())
        tokens = self.item_tokens[item_ids, :width]  # [N, T]
        mask = torch.arange(width, device=tokens.device)[None, :] < lengths[:, None]  # [N, T]
        states = self.plm(input_ids=tokens, attention_mask=mask.long()).last_hidden_state  # [N, T, H]
        return states, mask
