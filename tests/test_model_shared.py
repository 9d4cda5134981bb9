"""The parts every content model shares: NCE candidates from impression negatives and the per-impression batching of
labeled evaluation (one encoder pass per distinct history, one per item)."""
import pytest
import torch
from torch import nn

from recbole_embsum.model.eval_batching import ItemVectorCache, per_distinct_history
from recbole_embsum.model.losses import impression_candidates


def test_impression_candidates_put_the_click_first_and_draw_from_its_impression():
    batch = {"item_id": torch.tensor([7, 8]), "neg_items": torch.tensor([[3, 4, 0], [0, 0, 0]])}
    torch.manual_seed(0)
    candidates, valid = impression_candidates(batch, "item_id", 2, "NRMS")
    assert candidates[:, 0].tolist() == [7, 8]
    assert sorted(candidates[0, 1:].tolist()) == [3, 4] and valid[0].all()
    assert not valid[1].any() and candidates[1, 1:].tolist() == [0, 0]  # an impression without negatives


def test_impression_candidates_name_the_model_and_field_when_negatives_are_missing():
    with pytest.raises(KeyError, match="NRMS training batches need 'neg_items'"):
        impression_candidates({"item_id": torch.tensor([1])}, "item_id", 2, "NRMS")


def test_per_distinct_history_encodes_each_history_once():
    seq = torch.tensor([[1, 2, 0], [1, 2, 0], [3, 0, 0], [1, 2, 0]])
    lengths = torch.tensor([2, 2, 1, 2])
    seen = []

    def encode(histories, history_lengths):
        seen.append(len(histories))
        return histories.sum(dim=1, keepdim=True) * 10 + history_lengths[:, None]  # [U, 1]

    out = per_distinct_history(encode, seq, lengths)
    assert seen == [2]
    assert out[:, 0].tolist() == [32, 32, 31, 32]


def test_item_vector_cache_encodes_each_item_once_until_weights_change():
    owner = nn.Linear(2, 2)
    calls = []

    def encode(ids):
        calls.extend(ids.tolist())
        return owner.weight[0, 0].detach() * ids[:, None].float().repeat(1, 3)  # [c, 3]

    cache = ItemVectorCache(n_items=10, batch_size=2)
    first = cache.lookup(torch.tensor([4, 2, 4, 9]), encode, owner)
    assert sorted(calls) == [2, 4, 9] and first.shape == (4, 3)
    torch.testing.assert_close(first[0], first[2])
    again = cache.lookup(torch.tensor([2, 9]), encode, owner)
    assert sorted(calls) == [2, 4, 9]  # served from the cache
    torch.testing.assert_close(again, first[[1, 3]])
    with torch.no_grad():
        owner.weight.mul_(2.0)  # an optimizer step changes the weights in place
    changed = cache.lookup(torch.tensor([2]), encode, owner)
    assert calls[-1] == 2 and torch.allclose(changed, 2 * first[1])
    cache.clear()
    assert cache.vectors is None
