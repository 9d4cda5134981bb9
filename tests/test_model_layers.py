"""Masked attention layers of the content baselines: shapes, padding that changes nothing, fully padded rows."""
import pytest
import torch

from recbole_embsum.model.layers import (AdditiveAttention, FastformerEncoder, FastSelfAttention,
                                         MultiHeadSelfAttention, TextSelfAttentionEncoder, latest_items, masked_mean,
                                         masked_softmax)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _pad(x, extra):
    """``x`` [B, L, D] with ``extra`` random (garbage) positions appended, and the matching mask."""
    garbage = torch.randn(x.size(0), extra, x.size(2)) * 10
    mask = torch.cat([torch.ones(x.shape[:2], dtype=torch.bool), torch.zeros(x.size(0), extra, dtype=torch.bool)], 1)
    return torch.cat([x, garbage], dim=1), mask


def test_masked_softmax_gives_padding_zero_weight_and_empty_rows_zeros():
    scores = torch.tensor([[1.0, 2.0, 50.0], [3.0, 4.0, 5.0]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    weights = masked_softmax(scores, mask)
    expected = torch.cat([torch.softmax(torch.tensor([1.0, 2.0]), 0), torch.zeros(1)])
    assert torch.allclose(weights[0], expected)
    assert torch.equal(weights[1], torch.zeros(3))


def test_additive_attention_shapes_and_padding_changes_nothing():
    layer = AdditiveAttention(8, 5)
    x = torch.randn(3, 4, 8)
    pooled, weights = layer(x, torch.ones(3, 4, dtype=torch.bool))
    assert pooled.shape == (3, 8) and weights.shape == (3, 4)
    assert torch.allclose(weights.sum(1), torch.ones(3))
    padded, mask = _pad(x, 3)
    pooled_padded, weights_padded = layer(padded, mask)
    assert torch.allclose(pooled, pooled_padded, atol=1e-6)
    assert torch.equal(weights_padded[:, 4:], torch.zeros(3, 3))


def test_additive_attention_of_a_fully_padded_row_is_zero_not_nan():
    pooled, _ = AdditiveAttention(4, 3)(torch.randn(2, 3, 4), torch.tensor([[True, False, False], [False] * 3]))
    assert torch.isfinite(pooled).all() and torch.equal(pooled[1], torch.zeros(4))


def test_self_attention_padding_changes_nothing_and_rows_do_not_mix():
    layer = MultiHeadSelfAttention(8, heads=2, head_dim=3)
    x = torch.randn(2, 4, 8)
    out = layer(x, torch.ones(2, 4, dtype=torch.bool))
    assert out.shape == (2, 4, 6)
    padded, mask = _pad(x, 2)
    out_padded = layer(padded, mask)
    assert torch.allclose(out, out_padded[:, :4], atol=1e-6)
    assert torch.equal(out_padded[:, 4:], torch.zeros(2, 2, 6))  # padded positions output zeros
    # batch-first: a row's output depends on that row only (the reference bug attends across the batch)
    assert torch.allclose(layer(x[:1], torch.ones(1, 4, dtype=torch.bool)), out[:1], atol=1e-6)
    empty = layer(x, torch.zeros(2, 4, dtype=torch.bool))
    assert torch.equal(empty, torch.zeros_like(empty))


def test_fast_self_attention_padding_changes_nothing():
    layer = FastSelfAttention(8, heads=2)
    x = torch.randn(3, 5, 8)
    out = layer(x, torch.ones(3, 5, dtype=torch.bool))
    assert out.shape == (3, 5, 8)
    padded, mask = _pad(x, 4)
    assert torch.allclose(layer(padded, mask)[:, :5], out, atol=1e-5)
    with pytest.raises(ValueError, match="divisible"):
        FastSelfAttention(10, heads=3)


def test_fastformer_encoder_pools_and_ignores_padding():
    encoder = FastformerEncoder(8, heads=2, layers=2, dropout=0.0, max_positions=16).eval()
    x = torch.randn(3, 5, 8)
    pooled = encoder(x, torch.ones(3, 5, dtype=torch.bool))
    assert pooled.shape == (3, 8)
    padded, mask = _pad(x, 4)
    assert torch.allclose(encoder(padded, mask), pooled, atol=1e-5)
    assert torch.isfinite(encoder(x, torch.zeros(3, 5, dtype=torch.bool))).all()


def test_text_encoder_ignores_padding_words():
    embedding = torch.nn.Embedding(20, 6, padding_idx=0)
    encoder = TextSelfAttentionEncoder(embedding, heads=2, head_dim=4, query_dim=5, dropout=0.2).eval()
    tokens = torch.tensor([[3, 4, 5, 0, 0], [7, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    out = encoder(tokens)
    assert out.shape == (3, 8)
    assert torch.allclose(encoder(tokens[:, :3]), out, atol=1e-6)  # fewer padding columns: same vectors
    assert torch.equal(out[2], torch.zeros(8))  # an item without words


def test_latest_items_keeps_the_most_recent_oldest_first():
    seq = torch.tensor([[1, 2, 3, 4, 0], [5, 6, 0, 0, 0], [0, 0, 0, 0, 0]])
    items, mask = latest_items(seq, torch.tensor([4, 2, 0]), 3)
    assert items.tolist() == [[2, 3, 4], [5, 6, 0], [0, 0, 0]]
    assert mask.tolist() == [[True] * 3, [True, True, False], [False] * 3]


def test_masked_mean():
    x = torch.tensor([[[1.0], [3.0], [100.0]], [[5.0], [7.0], [9.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    assert masked_mean(x, mask).tolist() == [[2.0], [0.0]]
