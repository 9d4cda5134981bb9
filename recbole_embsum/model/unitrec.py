"""
UniTRec
################################################

Reference:
    Zhiming Mao, Huimin Wang, Yiming Du and Kam-Fai Wong. "UniTRec: A Unified Text-to-Text Transformer and Joint
    Contrastive Learning Framework for Text-based Recommendation." ACL 2023 (short).

Reference implementation: Veason-silverbullet/UniTRec (the authors' code, which the EmbSum paper ran):
``transformers/models/UniTRec/modeling_unitrec.py`` (``UniTRecEncoder``, ``UniTRecModel.forward``),
``textRec_datasets/newsrec_tokenize.py`` (input layout, stop-word targets), ``newsrec.py`` (losses, optimiser).

* **Encoder** (BART's, over the history): ``<s>`` then the history titles, most recent first, each ending with
  ``</s>``, at most ``history_max_tokens`` tokens (reference: 1024); besides BART's (global) positions, a new
  item-local position embedding (initialised to zero) gives each token's position inside its item. The first
  ``unitrec_local_layers`` layers (reference: 3) attend only within an item ("local attention": ``<s>`` alone, each
  item to itself), the others to the whole history.
* **Decoder** (BART's, causal, cross-attending to the history states), once per candidate:
  ``</s> candidate title </s>`` (BART's decoder start token first).
* **Discriminative score**: a linear map (no bias) of the decoder state at the final ``</s>``. **Perplexity
  score**: the mean log-probability of the candidate's title tokens (the final ``</s>`` and stop words excluded),
  times a learnable temperature (initial 1, clamped to [1/100, 100]) in training only.
* **Loss** (``newsrec.py``): softmax cross-entropy of the click against its ``train_neg_num`` impression negatives on
  the perplexity scores plus the same on the discriminative scores, unweighted (EmbSum's Eq. (5) twice).
* **Ranking**: by the discriminative score (the EmbSum paper's footnote 3); ``unitrec_score: perplexity`` ranks by
  the other head. (The reference's default evaluation averages both heads' ranks within an impression.)

Differences from the reference: stop words are NLTK's English list matched on whole words of the rendered text (the
reference matches their BART token sequences); with ``plm_init: pretrained`` the checkpoint's dropout applies (the
reference sets every dropout to 0; the packaged scratch sizes do too).

Evaluation encodes each distinct history of a batch once and decodes every candidate of its impression against
those states; the decoder still runs once per (history, candidate) pair, as in the reference.
"""
import logging
import re
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_embsum.text.sequences import concat, pack_items, special

from .losses import LossParts, nce_loss
from .pair_text import PairTextRecommender

logger = logging.getLogger(__name__)

SCORES = ("discriminative", "perplexity")
# NLTK's English stop words (nltk.corpus.stopwords, the list the reference excludes from perplexity targets); their
# apostrophe forms ("don't") are covered by the word parts ("don", "t") the \w+ words below split them into.
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself it its
itself they them their theirs themselves what which who whom this that these those am is are was were be been being
have has had having do does did doing a an the and but if or because as until while of at by for with about against
between into through during before after above below to from up down in out on off over under again further then
once here there when where why how all any both each few more most other some such no nor not only own same so than
too very s t can will just don should now d ll m o re ve y ain aren couldn didn doesn hadn hasn haven isn ma mightn
mustn needn shan shouldn wasn weren won wouldn
""".split())
_WORD = re.compile(r"\w+")


def content_token_mask(texts, tokenizer, width: int) -> torch.Tensor:
    """[len(texts), width] True at the tokens of ``texts`` (tokenised as ``build_item_rows`` does, without special
    tokens) that belong to a word outside ``STOP_WORDS``; False at stop-word tokens and beyond each text's tokens."""
    mask = torch.zeros(len(texts), width, dtype=torch.bool)
    encoded = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    for row, (text, offsets) in enumerate(zip(texts, encoded)):
        stop_spans = [match.span() for match in _WORD.finditer(text) if match.group().lower() in STOP_WORDS]
        for column, (start, end) in enumerate(offsets[:width]):
            inside = any(s <= start < e or s < end <= e for s, e in stop_spans)
            mask[row, column] = not inside
    return mask


class UniTRec(PairTextRecommender):
    r"""UniTRec: BART encoder over the history (local then global attention), decoder over each candidate; a
    discriminative and a perplexity head trained jointly."""

    plm_kind = "seq2seq"
    item_suffix = ("eos_token",)  # each item's tokens end with </s> (newsrec_tokenize.tokenize_MIND_news)
    loss_names = ("discriminative", "perplexity")
    eval_cost_note = "encoder once per distinct history, decoder once per (history, candidate) pair"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        bart_config = self.plm.config
        if bart_config.model_type != "bart":
            raise ValueError(f"UniTRec runs BART's encoder layers with its own local/global attention masks; plm "
                             f"{config['plm']!r} is a {bart_config.model_type!r} model: use a BART checkpoint (e.g. "
                             f"facebook/bart-base) or plm_config.model_type: bart")
        d_model, positions = bart_config.d_model, bart_config.max_position_embeddings
        self.history_max_tokens = config["history_max_tokens"]
        self.candidate_max_tokens = config["candidate_max_tokens"]
        for key, value in (("history_max_tokens", self.history_max_tokens),
                           ("candidate_max_tokens", self.candidate_max_tokens)):
            if value is None or not 2 <= value <= positions:
                raise ValueError(f"UniTRec: {key} must be in [2, {positions}] (BART's positions), got {value}")
        self.local_layers = config["unitrec_local_layers"]
        if self.local_layers is None or not 0 <= self.local_layers <= bart_config.encoder_layers:
            raise ValueError(f"UniTRec: unitrec_local_layers must be in [0, {bart_config.encoder_layers}] (encoder "
                             f"layers), got {self.local_layers}")
        self.score_head = config["unitrec_score"] or "discriminative"
        if self.score_head not in SCORES:
            raise ValueError(f"unitrec_score must be one of {SCORES}, got {self.score_head!r}")
        self.max_temperature = float(config["unitrec_max_temperature"] or 100.0)

        self.local_positions = nn.Embedding(positions, d_model)  # item-local positions, zero-initialised
        nn.init.zeros_(self.local_positions.weight)
        self.discriminative = nn.Linear(d_model, 1, bias=False)  # UniTRecModel.fc
        self.discriminative.weight.data.normal_(0.0, 0.02)
        self.temperature = nn.Parameter(torch.ones(1))  # perplexity temperature (init_temperature 1)
        keep = content_token_mask(self.item_rows.texts, self.tokenizer, self.item_tokens.size(1))
        if not config["unitrec_ignore_stopwords"]:
            keep = torch.arange(keep.size(1))[None, :] < (self.item_token_lengths - 1).clamp(min=0)[:, None]
        self.register_buffer("item_target_mask", keep, persistent=False)  # [n_items, T] perplexity targets

    # ----------------------------------------------------------------------------------------------- encoder
    def encode_history(self, history: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Histories [U, L] (item ids, most recent first) -> (encoder states [U, S, d], mask [U, S])."""
        encoder = self.plm.get_encoder()
        count = history.size(0)
        past = pack_items(history, self.item_tokens, self.item_token_lengths, self.history_max_tokens - 1)
        sequence = concat([special(self.tokenizer.bos_token_id, count, history.device), past],
                          self.tokenizer.pad_token_id)  # <s> item 1 </s> item 2 </s> ...: [U, S]
        segment = torch.where(sequence.part == 1, sequence.slot + 1, 0).masked_fill(~sequence.mask, -1)  # [U, S]
        local = torch.where(sequence.part == 1, sequence.local, 0)  # position inside the item
        # BART's scaled token embedding + its learned (global) positions + UniTRec's local positions
        hidden = (encoder.embed_tokens(sequence.tokens) + encoder.embed_positions(sequence.tokens)
                  + self.local_positions(local))  # [U, S, d]
        hidden = encoder.layernorm_embedding(hidden)
        hidden = F.dropout(hidden, p=encoder.dropout, training=self.training)
        blocked = torch.finfo(hidden.dtype).min
        local_mask = torch.zeros(segment.shape + segment.shape[-1:], dtype=hidden.dtype, device=hidden.device)
        local_mask = local_mask.masked_fill(segment[:, :, None] != segment[:, None, :], blocked)[:, None]  # [U,1,S,S]
        global_mask = torch.zeros_like(local_mask).masked_fill(~sequence.mask[:, None, None, :], blocked)
        for index, layer in enumerate(encoder.layers):
            hidden = layer(hidden, local_mask if index < self.local_layers else global_mask)
        return hidden, sequence.mask

    # ----------------------------------------------------------------------------------------------- decoder
    def decode(self, states: torch.Tensor, mask: torch.Tensor, candidates: torch.Tensor,
               perplexity: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """Candidates [N] against history states [N, S, d] / mask [N, S] -> (discriminative scores [N], mean target
        log-probabilities [N], or None unless ``perplexity``)."""
        count = candidates.size(0)
        target = pack_items(candidates[:, None], self.item_tokens, self.item_token_lengths,
                            self.candidate_max_tokens - 1)
        sequence = concat([special(self.plm.config.decoder_start_token_id, count, candidates.device), target],
                          self.tokenizer.pad_token_id)  # </s> title </s>: [N, T]
        states = self.plm.get_decoder()(input_ids=sequence.tokens, attention_mask=sequence.mask.long(),
                                        encoder_hidden_states=states, encoder_attention_mask=mask.long(),
                                        use_cache=False).last_hidden_state  # [N, T, d]
        last = sequence.lengths - 1  # the final </s>
        discriminative = self.discriminative(states[torch.arange(count, device=states.device), last]).squeeze(-1)
        if not perplexity:
            return discriminative, None
        logits = self.plm.lm_head(states[:, :-1]) + self.plm.final_logits_bias  # predicts tokens 1..T-1: [N, T-1, V]
        next_tokens = sequence.tokens[:, 1:]  # [N, T-1]
        counted = (sequence.part[:, 1:] == 1) & self.item_target_mask[candidates[:, None], sequence.local[:, 1:]]
        log_probs = logits.float().log_softmax(dim=-1).gather(-1, next_tokens[..., None]).squeeze(-1)  # [N, T-1]
        mean = (log_probs * counted).sum(dim=1) / counted.sum(dim=1).clamp(min=1)
        return discriminative, mean

    def score_pairs(self, history: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Ranking scores of pairs (history [N, L], candidates [N]) -> [N] (``unitrec_score`` head)."""
        states, mask = self.encode_history(history)
        return self._ranking_score(states, mask, candidates)

    def _ranking_score(self, states, mask, candidates):
        discriminative, perplexity = self.decode(states, mask, candidates, self.score_head == "perplexity")
        return (discriminative if self.score_head == "discriminative" else perplexity).float()

    def predict_pairs(self, histories: torch.Tensor, owner: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Each distinct history [U, L] encoded once (``pair_batch_size`` per call); every pair (``owner`` [N] ->
        history row, ``candidates`` [N]) decoded against its history's states, ``pair_batch_size`` at a time."""
        def score():
            encoded = [self.encode_history(chunk) for chunk in histories.split(self.pair_batch_size)]
            width = max(mask.size(1) for _, mask in encoded)
            states = torch.cat([F.pad(s, (0, 0, 0, width - s.size(1))) for s, _ in encoded])  # [U, S, d]
            masks = torch.cat([F.pad(m, (0, width - m.size(1))) for _, m in encoded])  # [U, S]
            scores = []
            for rows, items in zip(owner.split(self.pair_batch_size), candidates.split(self.pair_batch_size)):
                used = max(1, int(masks[rows].sum(dim=1).max()))  # tokens are left-aligned
                scores.append(self._ranking_score(states[rows, :used], masks[rows, :used], items))
            return torch.cat(scores)

        return self._timed(score, candidates.numel())

    # ---------------------------------------------------------------------------------------------- training
    def calculate_loss(self, interaction):
        """CE over the click and K negatives on the discriminative scores + the same on the temperature-scaled
        perplexity scores (``newsrec.py``); returns both parts (summed by the trainer), logged by name."""
        history = self._history(interaction)  # [B, L]
        candidates, valid = self._training_candidates(interaction)  # [B, 1+K], [B, K]
        batch, count = candidates.shape
        states, mask = self.encode_history(history)  # each history encoded once: [B, S, d]
        discriminative, perplexity = self.decode(states.repeat_interleave(count, dim=0),
                                                 mask.repeat_interleave(count, dim=0), candidates.flatten(), True)
        temperature = self.temperature.clamp(min=1.0 / self.max_temperature, max=self.max_temperature)
        dis_loss = nce_loss(discriminative.view(batch, count), valid)
        ppl_loss = nce_loss((perplexity * temperature).view(batch, count), valid)
        return LossParts((dis_loss, ppl_loss), logged=(dis_loss.detach(), ppl_loss.detach()))
