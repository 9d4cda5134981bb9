"""`ImpressionCollector`: RecBole's Collector plus each evaluation row's impression id, without RecBole's copies.

RecBole's Collector fills a fixed set of keys, so per-impression metrics cannot see which impression a row belongs
to. It also grows every key with ``torch.cat`` per batch (quadratic copying: ~660 batches for MIND-small dev) and
hands the trainer a ``deepcopy`` of everything at the end, so all rows are held twice. Here batches are kept as
chunks, copied once per key into one tensor when the evaluation ends (each chunk released as it is copied, so the
rows are never held twice), and the per-evaluation keys are handed over (moved, not copied); keys that outlive an
evaluation (``data.num_items`` ...) are still copied, as RecBole does.

Install it on any trainer: ``trainer.eval_collector = ImpressionCollector(config)``.
"""
import copy
import functools

import torch
from recbole.evaluator.collector import Collector, DataStruct

from recbole_embsum.evaluation.metrics import IMPRESSION_KEY

# Keys filled anew by every evaluation (RecBole's collector.py:get_data_struct list, plus the impression id).
PER_EVALUATION_KEYS = ("rec.topk", "rec.meanrank", "rec.score", "rec.items", "data.label", IMPRESSION_KEY)


class ChunkedDataStruct(DataStruct):
    """A DataStruct whose ``update_tensor`` appends chunks; `consolidate` concatenates each key once."""

    def __init__(self):
        super().__init__()
        self._chunks = {}

    def update_tensor(self, name, value):
        self._chunks.setdefault(name, []).append(value.detach().clone())

    def __contains__(self, key):
        return key in self._chunks or super().__contains__(key)

    def consolidate(self):
        """Concatenate every chunked key into one CPU tensor, releasing each chunk once it is copied, so the rows are
        held once (plus one batch) rather than twice as by ``torch.cat``."""
        for name in list(self._chunks):
            chunks = self._chunks.pop(name)
            dtype = functools.reduce(torch.promote_types, (chunk.dtype for chunk in chunks))  # as torch.cat
            out = torch.empty((sum(len(chunk) for chunk in chunks), *chunks[0].shape[1:]), dtype=dtype)
            chunks.reverse()
            start = 0
            while chunks:
                chunk = chunks.pop()  # the last reference: freed after the copy
                out[start:start + len(chunk)] = chunk
                start += len(chunk)
            self._data_dict[name] = out


class ImpressionCollector(Collector):
    """Collects ``data.impression_id`` (the impression id field of each row) for the metrics that need it."""

    def __init__(self, config):
        super().__init__(config)
        self.data_struct = ChunkedDataStruct()
        self.impression_field = config["IMPRESSION_ID_FIELD"] or "impression_id"

    def _collect_impressions(self, interaction):
        if self.register.need(IMPRESSION_KEY):
            if self.impression_field not in interaction:
                raise KeyError(
                    f"imp_* metrics need the '{self.impression_field}' field in evaluation batches; add it to "
                    f"load_col (inter), or set IMPRESSION_ID_FIELD to the dataset's impression id field"
                )
            self.data_struct.update_tensor(IMPRESSION_KEY, interaction[self.impression_field])

    def eval_batch_collect(self, scores_tensor, interaction, positive_u, positive_i):
        super().eval_batch_collect(scores_tensor, interaction, positive_u, positive_i)
        self._collect_impressions(interaction)

    def get_data_struct(self):
        """Hand over this evaluation's data (moved, not copied) and reset for the next evaluation."""
        self.data_struct.consolidate()
        returned = DataStruct()
        for key in list(self.data_struct._data_dict):
            if key in PER_EVALUATION_KEYS:
                returned[key] = self.data_struct._data_dict.pop(key)
            else:
                returned[key] = copy.deepcopy(self.data_struct[key])
        return returned
