"""MIND's official per-impression metrics (AUC, MRR, nDCG@5, nDCG@10) as RecBole VALUE metrics.

MIND's scorer (msnews.github.io, ``evaluate.py``) computes, for every impression separately,

* AUC    = sklearn ``roc_auc_score(labels, scores)``,
* MRR    = sum_i label_i / rank_i  /  sum_i label_i,
* nDCG@k = DCG@k(scores) / DCG@k(labels), DCG@k = sum_{rank <= k} (2^label - 1) / log2(rank + 1),

and reports each one's unweighted mean over impressions (RecBole's GAUC instead weights users by their positives).

Impressions where a metric is undefined are excluded from its mean and counted in the log: an impression without a
clicked candidate (all metrics), and one without a non-clicked candidate (AUC only; sklearn raises on it).

Ties. sklearn's AUC averages tied scores (a tied positive/negative pair counts 1/2). We give MRR and nDCG the same
treatment: a candidate whose score is tied with others over ranks a..b gets the mean of 1/rank (resp. of the
discount) over a..b, i.e. every metric is its expectation over a uniformly random order of the ties. This equals
torchmetrics' ``retrieval_normalized_dcg`` (sklearn's tie-averaged ``ndcg_score``) and ``binary_auroc`` exactly; MIND's
scorer itself breaks MRR/nDCG ties by ``np.argsort`` order, which is arbitrary, so untied scores give identical values.
torchmetrics' ``retrieval_reciprocal_rank`` is not MIND's MRR (it counts only the first clicked candidate and drops
candidates with a score <= 0), so MRR cannot come from it.

Speed. torchmetrics' retrieval functions score one query per call; MIND-small dev has ~73k impressions, so a Python
loop over them took ~22 s for nDCG@10 and AUC alone, against ~1-1.5 s for all four metrics here (2.7M rows, one CPU
thread; benchmarks/bench_metrics.py). Here all impressions are ranked by
one lexicographic sort and every metric is a segment sum over that ranking (`ImpressionRanking`), shared by the four
metric classes through the evaluation's DataStruct. Labels must be 0/1 (MIND clicks), which makes the ideal DCG
sum_{r <= min(P, k)} 1/log2(r + 1) for P clicked candidates.
"""
import abc
import logging
import math

import torch
from recbole.evaluator import register as recbole_register
from recbole.evaluator.base_metric import AbstractMetric
from recbole.utils import EvaluatorType

logger = logging.getLogger(__name__)

IMPRESSION_KEY = "data.impression_id"
# Where the shared ranking of one evaluation is cached inside RecBole's DataStruct.
_RANKING_KEY = "imp.ranking"
NDCG_CUTOFFS = (5, 10)


class ImpressionRanking:
    """All candidates ranked within their impression, by descending score, with tie runs.

    Built once per evaluation from the collected flat tensors; per-impression metric values are segment sums over it.

    Args:
        scores: ``[N]`` model scores.
        labels: ``[N]`` 0/1 clicks.
        impressions: ``[N]`` impression ids (any integers; rows of an impression need not be adjacent).
    """

    def __init__(self, scores, labels, impressions):
        if not (scores.shape == labels.shape == impressions.shape and scores.dim() == 1):
            raise ValueError(
                f"scores, labels and impression ids must be 1-D of equal length, got shapes "
                f"{tuple(scores.shape)}, {tuple(labels.shape)}, {tuple(impressions.shape)}"
            )
        if scores.numel() == 0:
            raise ValueError("no evaluation rows: the evaluation split is empty")
        if not bool(((labels == 0) | (labels == 1)).all()):
            bad = labels[(labels != 0) & (labels != 1)][:5].tolist()
            raise ValueError(f"per-impression metrics need 0/1 click labels, found e.g. {bad}")
        scores = scores.detach().float().cpu()
        impressions = impressions.detach().cpu()

        # Lexicographic order (impression asc, score desc) by two stable sorts.
        order = torch.argsort(scores, descending=True, stable=True)  # [N]
        order = order[torch.argsort(impressions[order], stable=True)]
        sorted_imp = impressions[order]
        sorted_scores = scores[order]
        self.labels = labels.detach().cpu()[order].double()  # [N]
        del order

        n = sorted_imp.numel()
        group_change = sorted_imp[1:] != sorted_imp[:-1]  # [N-1]
        first = torch.ones(1, dtype=torch.bool)
        # Impression of each row, 0..G-1, and its size.
        self.segment = torch.cumsum(torch.cat([first, group_change]), 0) - 1  # [N]
        self.num_impressions = int(self.segment[-1]) + 1
        self.sizes = torch.bincount(self.segment, minlength=self.num_impressions)  # [G]
        group_start = torch.cumsum(self.sizes, 0) - self.sizes  # [G]

        # Tie runs: maximal blocks of equal score inside one impression.
        run_start_flag = torch.cat([first, group_change | (sorted_scores[1:] != sorted_scores[:-1])])  # [N]
        run_id = torch.cumsum(run_start_flag, 0) - 1  # [N]
        run_start = torch.nonzero(run_start_flag).squeeze(1)  # [R]
        run_end = torch.cat([run_start[1:], torch.tensor([n])]) - 1  # [R], inclusive
        offset = group_start[self.segment]  # [N]
        # 1-based ranks within the impression of the first and last member of each row's tie run.
        self.rank_first = run_start[run_id] - offset + 1  # [N]
        self.rank_last = run_end[run_id] - offset + 1  # [N]

        self.positives = self._segment_sum(self.labels)  # [G]
        self.negatives = self.sizes.double() - self.positives  # [G]
        self.without_click = int((self.positives == 0).sum())
        self.without_nonclick = int((self.negatives == 0).sum())

    def _segment_sum(self, values):
        """Sum of ``values`` [N] per impression -> [G]."""
        return torch.zeros(self.num_impressions, dtype=torch.float64).index_add_(0, self.segment, values)

    def _tie_average(self, cumulative):
        """Mean of f(rank) over each row's tie run, given ``cumulative[r] = sum_{j<=r} f(j)`` (cumulative[0] = 0)."""
        run_length = (self.rank_last - self.rank_first + 1).double()
        return (cumulative[self.rank_last] - cumulative[self.rank_first - 1]) / run_length  # [N]

    def _max_size(self):
        return int(self.sizes.max())

    def auc(self):
        """Per-impression ROC AUC (ties count 1/2) -> ([G] values, [G] defined mask)."""
        # Ascending mid-rank = size + 1 - descending mid-rank; Mann-Whitney U = sum over positives - P(P+1)/2.
        mid_rank = (self.rank_first + self.rank_last).double() / 2
        ascending = self.sizes.double()[self.segment] + 1 - mid_rank  # [N]
        u = self._segment_sum(ascending * self.labels) - self.positives * (self.positives + 1) / 2
        defined = (self.positives > 0) & (self.negatives > 0)
        return u / (self.positives * self.negatives).clamp(min=1), defined

    def mrr(self):
        """Per-impression MRR = sum(label / rank) / sum(label) -> ([G], [G] defined mask)."""
        ranks = torch.arange(self._max_size() + 1, dtype=torch.float64)
        harmonic = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(1 / ranks[1:], 0)])
        reciprocal = self._tie_average(harmonic)  # [N]
        defined = self.positives > 0
        return self._segment_sum(reciprocal * self.labels) / self.positives.clamp(min=1), defined

    def ndcg(self, k):
        """Per-impression nDCG@k, gain 2^label - 1, discount log2(rank + 1) -> ([G], [G] defined mask)."""
        ranks = torch.arange(self._max_size() + 1, dtype=torch.float64)
        discount = torch.where(ranks <= k, 1 / torch.log2(ranks + 1), torch.zeros_like(ranks))
        discount[0] = 0.0
        cumulative = torch.cumsum(discount, 0)  # [max_size + 1]
        gains = torch.pow(2.0, self.labels) - 1  # [N]
        dcg = self._segment_sum(gains * self._tie_average(cumulative))
        ideal = cumulative[self.positives.long().clamp(max=k)]  # [G], labels are 0/1
        defined = self.positives > 0
        return dcg / torch.where(defined, ideal, torch.ones_like(ideal)), defined


def impression_ranking(dataobject):
    """The `ImpressionRanking` of one evaluation, computed on first use and cached in RecBole's DataStruct."""
    if _RANKING_KEY in dataobject:
        return dataobject.get(_RANKING_KEY)
    if IMPRESSION_KEY not in dataobject:
        raise KeyError(
            "imp_* metrics need the impression id of every evaluation row, which RecBole's Collector does not "
            "collect: install recbole_embsum.evaluation.ImpressionCollector as trainer.eval_collector "
            "(recbole_embsum.quick_start.run_recbole does this), and load the impression_id field (load_col)."
        )
    ranking = ImpressionRanking(
        dataobject.get("rec.score"), dataobject.get("data.label"), dataobject.get(IMPRESSION_KEY)
    )
    dataobject.set(_RANKING_KEY, ranking)
    logger.info(
        "per-impression metrics over %d impressions (%d rows): %d without a click are excluded from all imp_* "
        "metrics, %d without a non-clicked candidate are excluded from imp_auc",
        ranking.num_impressions, ranking.labels.numel(), ranking.without_click, ranking.without_nonclick,
    )
    return ranking


class _ImpressionMetric(AbstractMetric, abc.ABC):
    """Mean over impressions of one per-impression metric; the subclass names it and picks the computation."""

    metric_type = EvaluatorType.VALUE
    metric_need = ["rec.score", "data.label", IMPRESSION_KEY]
    smaller = False
    name = None

    @abc.abstractmethod
    def per_impression(self, ranking):
        """``(values [G], defined [G])`` of this metric for every impression of ``ranking``."""

    def calculate_metric(self, dataobject):
        ranking = impression_ranking(dataobject)
        values, defined = self.per_impression(ranking)
        if not bool(defined.any()):
            logger.warning("%s is undefined: no impression qualifies (%s)", self.name, self.exclusion_reason)
            return {self.name: math.nan}
        return {self.name: round(float(values[defined].mean()), self.decimal_place)}


class ImpAUC(_ImpressionMetric):
    """MIND's AUC: sklearn ``roc_auc_score`` per impression, averaged over impressions."""

    name = "imp_auc"
    exclusion_reason = "no clicked or no non-clicked candidate"

    def per_impression(self, ranking):
        return ranking.auc()


class ImpMRR(_ImpressionMetric):
    """MIND's MRR: sum(label / rank) / sum(label) per impression, averaged over impressions."""

    name = "imp_mrr"
    exclusion_reason = "no clicked candidate"

    def per_impression(self, ranking):
        return ranking.mrr()


class _ImpNDCG(_ImpressionMetric):
    """MIND's nDCG@k per impression, averaged over impressions; subclasses set ``k``."""

    exclusion_reason = "no clicked candidate"
    k = None

    def per_impression(self, ranking):
        return ranking.ndcg(self.k)


def ndcg_metric(k):
    """The metric class ``imp_ndcg@k`` (registered by `register_metrics` for k in NDCG_CUTOFFS)."""
    return type(f"ImpNDCG{k}", (_ImpNDCG,), {"k": k, "name": f"imp_ndcg@{k}", "__doc__": _ImpNDCG.__doc__})


IMPRESSION_METRICS = {cls.name: cls for cls in [ImpAUC, ImpMRR] + [ndcg_metric(k) for k in NDCG_CUTOFFS]}


def register_metrics():
    """Install the imp_* metrics into RecBole's metric registry, in place (idempotent).

    RecBole builds its registry once by introspecting ``recbole.evaluator.metrics``; Config, Register and Evaluator
    all read the same four module-level objects, so adding to them makes ``metrics: [imp_auc, ...]`` and
    ``valid_metric: imp_auc`` work. Must run before the Config is built.
    """
    for name, cls in IMPRESSION_METRICS.items():
        recbole_register.metrics_dict[name] = cls
        recbole_register.metric_information[name] = cls.metric_need
        recbole_register.metric_types[name] = cls.metric_type
        # All imp_* metrics are bigger-is-better, so none goes into recbole_register.smaller_metrics.
