"""``PairTextRecommender``: the frame of the candidate-aware language-model recommenders (UNBERT, UniTRec), which
read a user's history text and a candidate's text together, so no item or user vector exists on its own.

What they share, done here once:

* **Inputs.** A pretrained language model and its tokenizer (``text/backbone.load_plm``: ``plm``, ``plm_init``,
  ``plm_config``; a scratch tokenizer is trained on the rendered item texts) and every item's text
  (``plm_item_template``, title / abstract cut to ``title_max_tokens`` / ``abstract_max_tokens``) tokenised once into
  a table (``text/sequences.build_item_rows``); models assemble their "history + candidate" inputs from it with
  ``text/sequences``.
* **History.** The latest ``history_len`` items of ``item_id_list``, most recent first (so a token budget drops the
  oldest items first).
* **Training rows.** Each click with ``train_neg_num`` negatives drawn from its impression (``losses.py``); the
  model's ``calculate_loss`` says how they are scored.
* **Evaluation.** ``predict`` scores labeled (history, candidate) rows with ``score_pairs`` in chunks of
  ``pair_batch_size`` pairs; ``full_sort_predict`` does the same for every item (one language-model pass per (user,
  item) pair, which it logs). The measured cost per pair of the first batch of each evaluation pass is logged, and
  running totals are kept in ``pair_cost``.
"""
import abc
import logging
import time
from typing import Tuple

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_embsum.text.backbone import load_plm
from recbole_embsum.text.items import fill_template, item_text_path, load_item_texts
from recbole_embsum.text.sequences import ItemRows, build_item_rows

from .layers import history_length
from .losses import impression_candidates, impression_negatives_count
from .session import recent_first

logger = logging.getLogger(__name__)


class PairCost:
    """Language-model passes of (history, candidate) pairs in evaluation: ``pairs`` scored, ``seconds`` spent."""

    def __init__(self):
        self.pairs, self.seconds = 0, 0.0

    @property
    def ms_per_pair(self) -> float:
        return 1000.0 * self.seconds / max(1, self.pairs)


class PairTextRecommender(SequentialRecommender, metaclass=abc.ABCMeta):
    """Base of the recommenders that score a (history, candidate) pair from both texts at once.

    Subclasses set ``plm_kind`` (``encoder`` or ``seq2seq``, see ``load_plm``), may set ``item_suffix`` (names of
    tokenizer special tokens closing each item's tokens), and implement ``score_pairs`` and ``calculate_loss``.
    """

    input_type = InputType.POINTWISE
    training_negatives = "impression"  # trains on the impression's own neg_items (no RecBole negative sampling)
    accepts_empty_history = True  # an empty history is an input with no history tokens (compat.py)
    candidate_aware = True  # no standalone user or item vector: every (history, candidate) pair is one model pass
    plm_kind = "encoder"
    item_suffix: Tuple[str, ...] = ()  # e.g. ("eos_token",): each item's tokens end with the tokenizer's </s>
    eval_cost_note = "one language-model pass per (history, candidate) pair"  # what a pair costs, for the log

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        name = type(self).__name__
        self.history_len = history_length(config, self.max_seq_length)
        self.train_neg_num = impression_negatives_count(config, name)
        self.pair_batch_size = config["pair_batch_size"] or 64
        if self.pair_batch_size < 1:
            raise ValueError(f"{name}: pair_batch_size must be >= 1, got {self.pair_batch_size}")

        text_path = item_text_path(config["data_path"], config["dataset"])
        texts = load_item_texts(text_path)
        template = config["plm_item_template"] or "{title}"
        self.plm, self.tokenizer = load_plm(config, lambda: (fill_template(template, r) for r in texts.values()),
                                            self.plm_kind)
        suffix = [getattr(self.tokenizer, f"{role}_id") for role in self.item_suffix]
        self.item_rows: ItemRows = build_item_rows(dataset.field2id_token[self.ITEM_ID], texts, text_path,
                                                   self.tokenizer, template, config["title_max_tokens"],
                                                   config["abstract_max_tokens"], suffix)
        self.register_buffer("item_tokens", self.item_rows.tokens, persistent=False)  # [n_items, T]
        self.register_buffer("item_token_lengths", self.item_rows.lengths, persistent=False)  # [n_items]
        logger.info("%s: %s items of up to %d tokens (%r, title <= %s, abstract <= %s tokens), latest %d history "
                    "items", name, len(self.item_rows.texts) - 1, int(self.item_rows.lengths.max()), template,
                    config["title_max_tokens"], config["abstract_max_tokens"], self.history_len)
        self.pair_cost = PairCost()  # evaluation passes of (history, candidate) pairs, all passes so far
        self._cost_logged = False

    # ------------------------------------------------------------------------------------------- the model
    @abc.abstractmethod
    def score_pairs(self, history: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Ranking scores of pairs: histories [N, L] (item ids, most recent first, 0-padded) and candidates [N] ->
        [N]."""

    def _history(self, interaction) -> torch.Tensor:
        """The latest ``history_len`` items of each row, most recent first, 0-padded: [B, L]."""
        return recent_first(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], self.history_len)

    def _training_candidates(self, interaction) -> Tuple[torch.Tensor, torch.Tensor]:
        """The click and K impression negatives per row: ([B, 1+K] item ids, [B, K] validity)."""
        return impression_candidates(interaction, self.ITEM_ID, self.train_neg_num, type(self).__name__)

    # -------------------------------------------------------------------------------------------- evaluation
    def train(self, mode: bool = True):
        """A new evaluation pass logs its measured cost per pair again."""
        self._cost_logged = False
        return super().train(mode)

    def _timed(self, score, pairs: int) -> torch.Tensor:
        """``score()``, counted in ``pair_cost``; the first call of an evaluation pass logs the cost per pair."""
        start = time.perf_counter()
        scores = score()
        seconds = time.perf_counter() - start
        self.pair_cost.pairs += pairs
        self.pair_cost.seconds += seconds
        if not self._cost_logged:
            self._cost_logged = True
            logger.info("%s evaluation, %s: %d pairs in %.2f s (%.2f ms per pair on %s)", type(self).__name__,
                        self.eval_cost_note, pairs, seconds, 1000.0 * seconds / max(1, pairs), self.item_tokens.device)
        return scores

    def predict(self, interaction):
        """Scores of (history, candidate) rows [R] (RecBole's labeled evaluation); an impression's rows repeat its
        history, which is kept once."""
        histories, owner = torch.unique(self._history(interaction), dim=0, return_inverse=True)  # [U, L], [R]
        return self.predict_pairs(histories, owner, interaction[self.ITEM_ID])

    def full_sort_predict(self, interaction):
        """Scores of every history in the batch against all items -> [B, n_items]: one pass per (user, item) pair."""
        history = self._history(interaction)  # [B, L]
        batch = history.size(0)
        logger.info("%s full ranking: %d users x %d items = %d language-model passes (one per pair)",
                    type(self).__name__, batch, self.n_items, batch * self.n_items)
        owner = torch.arange(batch, device=history.device).repeat_interleave(self.n_items)  # [B * n_items]
        items = torch.arange(self.n_items, device=history.device).repeat(batch)  # [B * n_items]
        return self.predict_pairs(history, owner, items).view(batch, self.n_items)

    def predict_pairs(self, histories: torch.Tensor, owner: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Scores of pairs (``histories[owner[n]]``, ``candidates[n]``) -> [N], ``pair_batch_size`` pairs per model
        call, timed.

        Args:
            histories: [U, L] distinct histories (most recent first); owner: [N] row of each pair's history;
            candidates: [N] item ids.
        """
        def score():
            return torch.cat([self.score_pairs(histories[rows], items) for rows, items in
                              zip(owner.split(self.pair_batch_size), candidates.split(self.pair_batch_size))])

        return self._timed(score, candidates.numel())
