"""
EmbSum
################################################

Reference:
    Chiyu Zhang, Yifei Sun, Minghao Wu, et al. "EmbSum: Leveraging the Summarization Capabilities of Large Language
    Models for Content-Based Recommendations." arXiv 2405.11441, 2024 (Section 2).

A T5 encoder reads the user's latest k items in sessions of p items (Section 2.3); the T5 decoder fuses all session
states (fusion-in-decoder) and is trained to write the user's LLM-generated interest summary (Eq. (1)); its
[EOS] state is the global user vector. Poly-attention turns the k item vectors plus the global vector into the User
Poly-Embedding (Eq. (2)) and a candidate's encoder states into the Content Poly-Embedding (Section 2.4); Eqs. (3)-(4)
score a pair, trained with NCE over the click and impression negatives plus lambda * L_sum (Eqs. (5)-(6)).
"""
import itertools
import logging
import os
from typing import List, NamedTuple, Optional, Tuple

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from transformers.modeling_outputs import BaseModelOutput

from recbole_embsum.summaries.store import SOURCES, load_summaries
from recbole_embsum.text.backbone import decoder_logits, load_backbone
from recbole_embsum.text.items import (build_item_token_table, build_summary_token_table, default_summary_path,
                                       fill_template, item_text_path, load_item_texts)

from .eval_batching import ItemVectorCache, per_distinct_history
from .losses import IGNORE_INDEX, LossParts, impression_candidates, nce_loss, summary_loss
from .poly_attention import PolyAttention
from .scorer import PolyScorer
from .session import pack_sessions, recent_first

logger = logging.getLogger(__name__)

EVAL_GLOBAL_CHOICES = ("generate", "start")


class HistoryEncoding(NamedTuple):
    """Encoder view of a batch of histories (Section 2.3).

    item_vectors: [B, k, d] [SOS] state of each history item, most recent first; item_mask: [B, k];
    fused: [B, F, d] all session token states of a user concatenated (decoder memory); fused_mask: [B, F].
    """

    item_vectors: torch.Tensor
    item_mask: torch.Tensor
    fused: torch.Tensor
    fused_mask: torch.Tensor


def _required(config, key: str):
    value = config[key]
    if value is None:
        raise ValueError(f"EmbSum needs '{key}' in the config (the dataset yaml provides it)")
    return value


class EmbSum(SequentialRecommender):
    r"""EmbSum: user and content poly-embeddings from a T5 encoder-decoder, supervised by user-interest summaries.

    Batches follow the design contract: ``item_id`` (click) [B], ``neg_items`` [B, L_neg] (0-padded),
    ``item_id_list`` [B, L] (chronological, 0-padded at the end), ``item_length`` [B] and ``user_id`` [B].
    """

    input_type = InputType.POINTWISE
    loss_names = ("nce", "summary")  # the parts calculate_loss returns, as EmbSumTrainer logs them
    accepts_empty_history = True  # a user without history is represented by the global vector alone (compat.py)
    training_negatives = "impression"  # K of the impression's own non-clicked items (neg_items), not sampled

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.k = self.max_seq_length  # latest k history items (MAX_ITEM_LIST_LENGTH)
        self.session_grouping = config["session_grouping"]
        self.session_size = config["session_size"] if self.session_grouping else 1  # p ("wo grouping": p = 1)
        self.train_neg_num = config["train_neg_num"]
        if self.train_neg_num is None or self.train_neg_num < 1:
            raise ValueError(f"EmbSum needs train_neg_num >= 1 (negatives per click), got {self.train_neg_num}")
        self.summary_weight = config["summary_weight"]  # lambda in Eq. (6)
        self.use_summary_loss = config["use_summary_loss"]
        self.summary_loss_reduction = config["summary_loss_reduction"]
        self.use_cpe = config["use_cpe"]
        self.eval_global_vector = config["eval_global_vector"]
        if self.eval_global_vector not in EVAL_GLOBAL_CHOICES:
            raise ValueError(f"eval_global_vector must be one of {EVAL_GLOBAL_CHOICES}, got {self.eval_global_vector!r}")
        self.summary_max_tokens = config["summary_max_tokens"]
        self.summary_generation = dict(config["summary_generation"] or {})  # Hugging Face generate() options
        self.item_encode_batch_size = config["item_encode_batch_size"]
        self._item_cache = ItemVectorCache(self.n_items, self.item_encode_batch_size)  # eval CPEs [n_items, n, d]

        text_path = item_text_path(config["data_path"], config["dataset"])
        texts = load_item_texts(text_path)
        template = _required(config, "item_template")
        summaries = self._load_summaries(config)  # read even without L_sum: the scratch tokenizer's text

        def corpus():  # text a scratch tokenizer is trained on: rendered items and summaries (its cache key hashes it)
            rendered = (fill_template(template, record) for record in texts.values())
            return itertools.chain(rendered, summaries.values())

        self.t5, self.tokenizer = load_backbone(config, corpus)
        d_model = self.t5.config.d_model
        code_dim = config["poly_attention_dim"] or d_model  # p in Eq. (2)
        self.upe = PolyAttention(d_model, config["upe_codes"], code_dim)  # Eq. (2), m codes, W^f
        self.cpe = PolyAttention(d_model, config["cpe_codes"], code_dim) if self.use_cpe else None  # n codes, W^o
        self.scorer = PolyScorer(d_model)  # W^s, Eqs. (3)-(4)

        item_tokens, item_lengths = build_item_token_table(
            dataset.field2id_token[self.ITEM_ID], texts, text_path, self.tokenizer, template,
            _required(config, "title_max_tokens"), _required(config, "abstract_max_tokens"))
        self.register_buffer("item_tokens", item_tokens, persistent=False)  # [n_items, L]
        self.register_buffer("item_token_lengths", item_lengths, persistent=False)  # [n_items]
        # Items are cut only by the title / abstract caps (Section 3), in every mode, so text never depends on grouping:
        # a row is at most title_max_tokens + abstract_max_tokens + template and category + [SOS] </s> tokens.
        self.max_item_tokens = int(item_lengths.max())
        logger.info("EmbSum: item rows of up to %d tokens (title <= %d, abstract <= %d, plus template and category); "
                    "sessions of %d items up to %d tokens", self.max_item_tokens, config["title_max_tokens"],
                    config["abstract_max_tokens"], self.session_size, self.session_size * self.max_item_tokens)
        if config["session_max_tokens"] is not None:
            logger.warning("EmbSum: session_max_tokens is no longer read: item rows are cut only by title_max_tokens "
                           "and abstract_max_tokens (paper Section 3); remove it from your config")
        summary_tokens, summary_lengths = build_summary_token_table(
            dataset.field2id_token[self.USER_ID], summaries if self.use_summary_loss else {}, self.tokenizer,
            self.summary_max_tokens)
        self.register_buffer("summary_tokens", summary_tokens, persistent=False)  # [n_users, T_sum]
        self.register_buffer("summary_lengths", summary_lengths, persistent=False)  # [n_users], 0 = none
        self.n_summaries = int((summary_lengths > 0).sum())
        last_token = summary_tokens.gather(1, (summary_lengths - 1).clamp(min=0)[:, None])[:, 0]  # [n_users]
        n_cut = int(((summary_lengths > 0) & (last_token != self.tokenizer.eos_token_id)).sum())
        if n_cut:
            logger.warning("EmbSum: %d of %d summaries are longer than summary_max_tokens=%d and are cut (their "
                           "target ends without </s>)", n_cut, self.n_summaries, self.summary_max_tokens)
        if self.use_summary_loss:
            n_users = len(dataset.field2id_token[self.USER_ID]) - 1
            logger.info("EmbSum: %d of %d users have a summary; %d train without L_sum (decoder start token only)",
                        self.n_summaries, n_users, n_users - self.n_summaries)


    def _load_summaries(self, config) -> dict:
        """Summaries keyed by raw user id from ``summary_path`` (default ``<data_path>/<dataset>.summaries.jsonl``
        when that exists); empty when no file is there.

        Read also when the summary loss is switched off: they are part of the scratch tokenizer's training text, so
        the w/o-L_sum ablation keeps the full model's tokenizer (and its item token table)."""
        path = config["summary_path"]
        if path is None:
            path = default_summary_path(config["data_path"], config["dataset"])
            if not os.path.exists(path):
                if self.use_summary_loss:
                    logger.warning("EmbSum: no summaries at %s; every user trains without L_sum", path)
                return {}
        elif not os.path.exists(path):
            raise FileNotFoundError(f"summary_path: {path} does not exist")
        # The summarize tool's store: validates every record, tolerates the torn last line of a killed writer.
        summaries = load_summaries(path, source=SOURCES["train"])  # warns about summaries that saw training clicks
        return {user: text.strip() for user, text in summaries.items() if text.strip()}

    # ----------------------------------------------------------------------------------------------- encoders
    def _encode(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """T5 encoder states of ``tokens`` [N, T] under ``mask`` [N, T] -> [N, T, d]."""
        return self.t5.encoder(input_ids=tokens, attention_mask=mask.long()).last_hidden_state

    def encode_history(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> HistoryEncoding:
        """Session encoding (Section 2.3): latest k items, most recent first, g sessions of p items, every non-empty
        session of the batch in one encoder call; an item is its [SOS] state."""
        history = recent_first(item_seq, item_seq_len, self.k)  # [B, k]
        packed = pack_sessions(history, self.session_size, self.item_tokens, self.item_token_lengths,
                               self.tokenizer.pad_token_id)
        batch, d_model = history.size(0), self.t5.config.d_model
        n_sessions = packed.n_slots // batch  # g
        if packed.owner.numel():
            states = self._encode(packed.tokens, packed.mask)  # [S, T, d]
        else:  # nobody in the batch has a history
            states = self.t5.shared.weight.new_zeros(0, 1, d_model)
        width = states.size(1)

        starts = packed.starts[..., None].expand(-1, -1, d_model)  # [S, p, d]
        item_slots = states.new_zeros(packed.n_slots, self.session_size, d_model)
        item_slots[packed.owner] = states.gather(1, starts)  # [SOS] state of each item
        item_vectors = item_slots.view(batch, n_sessions * self.session_size, d_model)[:, : self.k]  # [B, k, d]
        item_vectors = item_vectors.masked_fill((history == 0)[..., None], 0.0)  # padding items: zero vectors

        # Fusion-in-decoder: the token states of all of a user's sessions, concatenated (Section 2.3).
        fused = states.new_zeros(packed.n_slots, width, d_model)
        fused[packed.owner] = states
        fused_mask = packed.mask.new_zeros(packed.n_slots, width)
        fused_mask[packed.owner] = packed.mask
        used = max(1, int((history != 0).sum(dim=1).max()) if batch else 1)
        used = -(-used // self.session_size)  # sessions are filled most recent first, so they form a prefix
        fused = fused.view(batch, n_sessions, width, d_model)[:, :used].reshape(batch, used * width, d_model)
        fused_mask = fused_mask.view(batch, n_sessions, width)[:, :used].reshape(batch, used * width)
        return HistoryEncoding(item_vectors, history != 0, fused, fused_mask)

    def _decoder_states(self, history: HistoryEncoding, decoder_input: torch.Tensor,
                        decoder_mask: torch.Tensor) -> torch.Tensor:
        """Final T5 decoder states [B, T', d] of ``decoder_input`` [B, T'] (under ``decoder_mask``) over the fused
        session states (fusion-in-decoder, Section 2.3)."""
        return self.t5.decoder(input_ids=decoder_input, attention_mask=decoder_mask.long(),
                               encoder_hidden_states=history.fused, encoder_attention_mask=history.fused_mask.long(),
                               use_cache=False).last_hidden_state

    def decode_summary(self, history: HistoryEncoding, targets: torch.Tensor,
                       target_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced decoding of the users' summaries (Eq. (1)); the global vector is the state that emits [EOS].

        Args:
            targets: [B, T] summary token ids ending with </s> (a summary cut at ``summary_max_tokens`` has none, so
                its global vector is the state at its last kept token); target_lengths: [B] (0 = no summary: that
                row's decoder gets only its start token, the paper's "wo L_sum").

        Returns:
            (global user vector [B, d], logits [B, T', V], labels [B, T'] with IGNORE_INDEX where no token is
            predicted).
        """
        steps = max(1, int(target_lengths.max()) if target_lengths.numel() else 1)
        targets = targets[:, :steps]
        if targets.size(1) < steps:
            targets = torch.nn.functional.pad(targets, (0, steps - targets.size(1)), value=self.tokenizer.pad_token_id)
        positions = torch.arange(steps, device=targets.device)[None, :]  # [1, T']
        labels = targets.masked_fill(positions >= target_lengths[:, None], IGNORE_INDEX)  # [B, T']
        decoder_input = self.t5.prepare_decoder_input_ids_from_labels(targets)  # [start, y_1, ..., y_{T'-1}]
        decoder_mask = positions < target_lengths.clamp(min=1)[:, None]  # [B, T']
        states = self._decoder_states(history, decoder_input, decoder_mask)  # [B, T', d]
        last = (target_lengths - 1).clamp(min=0)  # position whose output is [EOS]
        global_vector = states[torch.arange(states.size(0), device=states.device), last]  # [B, d]
        return global_vector, decoder_logits(self.t5, states), labels

    def global_from_start_token(self, history: HistoryEncoding) -> torch.Tensor:
        """Global user vector [B, d] as the decoder's state at its start token alone (no summary)."""
        start = history.fused_mask.new_full((history.fused.size(0), 1), self.t5.config.decoder_start_token_id,
                                            dtype=torch.long)  # [B, 1]
        return self._decoder_states(history, start, torch.ones_like(start, dtype=torch.bool))[:, 0]  # [B, d]

    def global_from_generated_summary(self, history: HistoryEncoding) -> torch.Tensor:
        """Global user vector [B, d] as the state that emits [EOS] of a greedily generated summary."""
        sequences = self._generate(history)  # [B, 1 + T]: the start token, then the summary
        is_eos = sequences[:, 1:] == self.tokenizer.eos_token_id
        first_eos = torch.where(is_eos.any(dim=1), is_eos.float().argmax(dim=1), is_eos.size(1) - 1)  # [B]
        steps = int(first_eos.max()) + 1
        positions = torch.arange(steps, device=sequences.device)[None, :]  # [1, T']
        states = self._decoder_states(history, sequences[:, :steps], positions <= first_eos[:, None])  # [B, T', d]
        return states[torch.arange(states.size(0), device=states.device), first_eos]  # [B, d]

    def _user_poly(self, history: HistoryEncoding, global_vector: torch.Tensor) -> torch.Tensor:
        """UPE (Eq. (2)) over Z = [k item vectors; global vector] -> A [B, m, d]."""
        z = torch.cat([history.item_vectors, global_vector[:, None]], dim=1)  # [B, k+1, d]
        mask = torch.cat([history.item_mask, history.item_mask.new_ones(z.size(0), 1)], dim=1)  # [B, k+1]
        return self.upe(z, mask)

    def _generate(self, history: HistoryEncoding, max_new_tokens: Optional[int] = None, **generate_kwargs):
        generate_kwargs = {"do_sample": False, "num_beams": 1, **self.summary_generation, **generate_kwargs}
        return self.t5.generate(encoder_outputs=BaseModelOutput(last_hidden_state=history.fused),
                                attention_mask=history.fused_mask.long(),
                                max_new_tokens=max_new_tokens or self.summary_max_tokens, **generate_kwargs)

    def _inference_generates(self) -> bool:
        """Without a summary target, the global vector comes from a generated summary's [EOS] state when the decoder
        was trained to summarise (``eval_global_vector: generate``), else from the start token alone."""
        return self.eval_global_vector == "generate" and self.use_summary_loss and self.n_summaries > 0

    # ----------------------------------------------------------------------------------------- public embeddings
    def user_poly_embeddings(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """User Poly-Embeddings A [B, m, d] of histories ``item_seq`` [B, L] (chronological) / ``item_seq_len`` [B].

        The global vector comes from a generated summary or from the decoder's start token alone (see
        ``eval_global_vector``); a reference summary is read only in training.
        """
        history = self.encode_history(item_seq, item_seq_len)
        if self._inference_generates():
            global_vector = self.global_from_generated_summary(history)
        else:
            global_vector = self.global_from_start_token(history)
        return self._user_poly(history, global_vector)

    def item_poly_embeddings(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Content Poly-Embeddings B [N, n, d] of ``item_ids`` [N] (Section 2.4); with ``use_cpe: False`` the
        [SOS] encoder state only, [N, 1, d]. Each distinct item is encoded once."""
        unique, inverse = torch.unique(item_ids, return_inverse=True)
        lengths = self.item_token_lengths[unique]  # [U]
        tokens = self.item_tokens[unique][:, : int(lengths.max())]  # [U, L]
        mask = torch.arange(tokens.size(1), device=tokens.device)[None, :] < lengths[:, None]
        states = self._encode(tokens, mask)  # [U, L, d]
        poly = self.cpe(states, mask) if self.use_cpe else states[:, :1]  # CPE via Eq. (2), or [SOS] only
        return poly[inverse]

    def generate_summary(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor,
                         max_new_tokens: Optional[int] = None, **generate_kwargs) -> List[str]:
        """Decode a user-interest summary for each history from the fused session states (greedy by default;
        ``generate_kwargs`` go to Hugging Face ``generate``)."""
        with torch.no_grad():
            history = self.encode_history(item_seq, item_seq_len)
            sequences = self._generate(history, max_new_tokens, **generate_kwargs)
        return self.tokenizer.batch_decode(sequences, skip_special_tokens=True)

    # ---------------------------------------------------------------------------------------------- training
    def calculate_loss(self, interaction):
        """Eq. (6), L = L_NCE + lambda * L_sum: returns the parts ``(L_NCE, lambda * L_sum)`` (their sum is L, under
        EmbSumTrainer and RecBole's Trainer alike) with ``.logged = (L_NCE, L_sum)``, the unscaled values
        EmbSumTrainer reports as ``nce`` and ``summary``."""
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        history = self.encode_history(item_seq, item_seq_len)
        if self.use_summary_loss:
            users = interaction[self.USER_ID]
            global_vector, logits, labels = self.decode_summary(history, self.summary_tokens[users],
                                                                self.summary_lengths[users])
            # Eq. (1) is a sum over the summary's tokens; by default (summary_loss_reduction: mean) L_sum is its mean
            # over the batch's summary tokens (Hugging Face's T5 loss), which sets the scale lambda = 0.05 weighs
            # against L_NCE, itself a mean over rows (Eq. (5)). "sum" gives Eq. (1) as printed, per user.
            sum_loss = summary_loss(logits, labels, self.summary_loss_reduction)  # Eq. (1)
        else:  # "wo L_sum"
            global_vector = self.global_from_start_token(history)
            sum_loss = global_vector.new_zeros((), dtype=torch.float32)
        user_poly = self._user_poly(history, global_vector)  # A: [B, m, d]

        candidates, valid = impression_candidates(interaction, self.ITEM_ID, self.train_neg_num, "EmbSum")  # [B, 1+K]
        item_poly = self.item_poly_embeddings(candidates.flatten()).unflatten(0, candidates.shape)  # [B,1+K,n,d]
        scores = self.scorer.score_pairs(user_poly[:, None], item_poly)  # Eqs. (3)-(4), broadcast: [B, 1+K]
        nce = nce_loss(scores, valid)  # Eq. (5), mean over rows
        return LossParts((nce, self.summary_weight * sum_loss), logged=(nce.detach(), sum_loss.detach()))  # Eq. (6)

    # -------------------------------------------------------------------------------------------- evaluation
    def train(self, mode: bool = True):
        """Switching between training and evaluation drops the cached item embeddings."""
        self._item_cache.clear()
        return super().train(mode)

    def _eval_item_poly(self, item_ids: torch.Tensor) -> torch.Tensor:
        """CPEs of ``item_ids`` [N] -> [N, n, d]; in evaluation each item is encoded once per pass and cached."""
        if self.training:
            return self.item_poly_embeddings(item_ids)
        return self._item_cache.lookup(item_ids, self.item_poly_embeddings, self)

    def _row_user_poly(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """UPEs for evaluation rows [R] -> [R, m, d], encoding each distinct history of the batch once
        (labeled mode repeats a history for every candidate of an impression)."""
        return per_distinct_history(self.user_poly_embeddings, item_seq, item_seq_len)

    def predict(self, interaction):
        """Scores of (history, candidate) rows [R] (RecBole's labeled evaluation)."""
        user_poly = self._row_user_poly(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])  # [R, m, d]
        item_poly = self._eval_item_poly(interaction[self.ITEM_ID]).to(user_poly.dtype)  # [R, n, d]
        return self.scorer.score_pairs(user_poly, item_poly)  # [R]

    def full_sort_predict(self, interaction):
        """Scores of every history in the batch against all items -> [B, n_items]."""
        user_poly = self._row_user_poly(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])  # [B, m, d]
        all_items = torch.arange(self.n_items, device=user_poly.device)
        item_poly = self._eval_item_poly(all_items).to(user_poly.dtype)  # [n_items, n, d]
        return self.scorer.score_grid(user_poly, item_poly)  # [B, n_items]
