"""EmbSum building blocks against hand-computed cases: poly-attention (Eq. (2)), scorer (Eqs. (3)-(4)), NCE (Eq. (5)),
summary loss (Eq. (1)), negative sampling, session layout and item text handling."""
import json
import math

import pytest
import torch

from recbole_embsum.model.losses import IGNORE_INDEX, nce_loss, draw_negatives, summary_loss
from recbole_embsum.model.poly_attention import PolyAttention
from recbole_embsum.model.scorer import PolyScorer, poly_score_grid
from recbole_embsum.model.session import pack_sessions, recent_first
from recbole_embsum.text.backbone import train_tokenizer
from recbole_embsum.text.items import (ITEM_START_TOKEN, build_item_token_table, build_summary_token_table,
                                       ItemTextError, load_item_texts, render_items, truncate_to_tokens)


# ------------------------------------------------------------------------------------------------ Eq. (2)
def test_poly_attention_matches_hand_computed_case():
    """c = [1, 0], W^f = I, Z = [[1, 0], [0, 1], [5, 5] (padding)]:
    tanh(Z W^f) = [[tanh 1, 0], [0, tanh 1]]; logits [tanh 1, 0] = [0.76159, 0];
    softmax = [0.68170, 0.31830]; alpha = 0.68170 [1, 0] + 0.31830 [0, 1]."""
    layer = PolyAttention(d_model=2, n_codes=1, code_dim=2)
    with torch.no_grad():
        layer.codes.copy_(torch.tensor([[1.0, 0.0]]))
        layer.proj.weight.copy_(torch.eye(2))
    z = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    out = layer(z, torch.tensor([[True, True, False]]))
    assert out.shape == (1, 1, 2)
    torch.testing.assert_close(out[0, 0], torch.tensor([0.6816997, 0.3183003]))


def test_poly_attention_gives_one_vector_per_code():
    layer = PolyAttention(d_model=4, n_codes=3, code_dim=5)
    z, mask = torch.randn(2, 6, 4), torch.ones(2, 6, dtype=torch.bool)
    out = layer(z, mask)
    assert out.shape == (2, 3, 4)
    with pytest.raises(ValueError, match="n_codes >= 1"):
        PolyAttention(4, 0, 5)


# --------------------------------------------------------------------------------------------- Eqs. (3)-(4)
def _hand_scorer():
    scorer = PolyScorer(d_model=2)
    with torch.no_grad():
        scorer.w_s.weight.copy_(torch.eye(2))
    return scorer


def test_scorer_matches_hand_computed_case():
    """A = [[1, 0], [0, 2]] (m = 2), B = [[3, 1]] (n = 1), W^s = I:
    K = flatten(A B^T) = [3, 2]; gelu(B) = [2.99595, 0.84134]; A gelu(B)^T = [2.99595, 1.68269];
    W^p = softmax = [0.78806, 0.21194]; s = 3 * 0.78806 + 2 * 0.21194 = 2.78806."""
    a = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    b = torch.tensor([[[3.0, 1.0]]])
    torch.testing.assert_close(_hand_scorer().score_pairs(a, b), torch.tensor([2.7880583]))


def test_score_grid_equals_pairs_in_any_chunking():
    torch.manual_seed(0)
    scorer = PolyScorer(d_model=8)
    users, items = torch.randn(3, 4, 8), torch.randn(5, 2, 8)
    pairs = torch.stack([scorer.score_pairs(users[u : u + 1].expand(5, -1, -1), items) for u in range(3)])
    for chunk_items in (1, 2, 8):  # 1 item, a few items, all at once
        torch.testing.assert_close(scorer.score_grid(users, items, chunk_items), pairs)
    assert scorer.score_grid(users, items[:0]).shape == (3, 0)
    keys = scorer.item_keys(items).detach()
    # 1 pair per block; 2 users x 32 items (GRID_MIN_BLOCK_ITEMS) per block, the last with 1 user; all at once
    for block_elements in (1, 2 * 4 * 2 * 32 * 2, 2**20):
        torch.testing.assert_close(poly_score_grid(users, items, keys, block_elements), pairs)
    assert poly_score_grid(users[:0], items, keys).shape == (0, 5)


def test_score_grid_in_worker_threads_equals_pairs_and_keeps_the_thread_count():
    torch.manual_seed(0)
    scorer = PolyScorer(d_model=8)
    users, items = torch.randn(3, 4, 8), torch.randn(70, 2, 8)
    pairs = torch.stack([scorer.score_pairs(users[u : u + 1].expand(70, -1, -1), items) for u in range(3)])
    keys, block_elements = scorer.item_keys(items).detach(), 2 * 4 * 2 * 32 * 2  # 2 users x 32 items per block
    threads = torch.get_num_threads()
    try:
        grids = {}
        for count in (1, 2):  # serially; 2 x 3 blocks over 2 worker threads
            torch.set_num_threads(count)
            with torch.autocast("cpu", dtype=torch.bfloat16):  # the workers compute as the caller's thread would
                grids[count, "bf16"] = poly_score_grid(users, items, keys, block_elements)
            grids[count] = poly_score_grid(users, items, keys, block_elements)
            assert torch.get_num_threads() == count
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(grids[2], pairs)
    assert torch.equal(grids[2], grids[1])
    assert grids[2, "bf16"].dtype == grids[1, "bf16"].dtype and torch.equal(grids[2, "bf16"], grids[1, "bf16"])
    assert not torch.equal(grids[1, "bf16"].float(), grids[1])


def test_score_grid_refuses_inputs_that_want_gradients():
    users, items = torch.randn(2, 4, 8, requires_grad=True), torch.randn(3, 2, 8)
    with pytest.raises(ValueError, match="without autograd: call it under torch.no_grad"):
        poly_score_grid(users, items, items)
    with torch.no_grad():
        assert poly_score_grid(users, items, items).shape == (2, 3)


def test_score_grid_is_stable_for_large_attention_logits():
    """Softmax over m*n pairs with logits in the thousands: no overflow, the score is the top pair's match."""
    users = torch.tensor([[[1000.0, 0.0], [0.0, 1.0]]])  # [1, m=2, d=2]
    items = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # [2, n=1, d=2]
    scores = poly_score_grid(users, items, items * 100)  # keys = 100 B: logits up to 1e5
    torch.testing.assert_close(scores, torch.tensor([[1000.0, 1.0]]))


# -------------------------------------------------------------------------------------------------- Eq. (5)
def test_nce_matches_hand_computed_case():
    """s+ = 2, s- = [0, 1]: -log(e^2 / (e^2 + e^0 + e^1)) = log(1 + e^-2 + e^-1) = 0.40761;
    with the second negative masked: log(1 + e^-2) = 0.12693; a row without negatives contributes 0."""
    scores = torch.tensor([[2.0, 0.0, 1.0]])
    torch.testing.assert_close(nce_loss(scores, torch.tensor([[True, True]])), torch.tensor(0.4076060))
    torch.testing.assert_close(nce_loss(scores, torch.tensor([[True, False]])), torch.tensor(0.1269280))
    both = nce_loss(torch.tensor([[2.0, 0.0, 1.0], [5.0, 9.0, 9.0]]), torch.tensor([[True, True], [False, False]]))
    torch.testing.assert_close(both, torch.tensor(0.4076060 / 2))


# -------------------------------------------------------------------------------------------------- Eq. (1)
def test_summary_loss_mean_and_sum_match_hand_computed_case():
    """Row 0: two tokens under uniform logits over 4 ids (NLL log 4 each); row 1: one token with logit 10 vs three 0s
    (NLL log(1 + 3 e^-10)); row 2: no summary. mean = total / 3 tokens; sum = total / 2 users."""
    logits = torch.zeros(3, 2, 4)
    logits[1, 0, 1] = 10.0
    labels = torch.tensor([[1, 2], [1, IGNORE_INDEX], [IGNORE_INDEX, IGNORE_INDEX]])
    total = 2 * math.log(4) + math.log(1 + 3 * math.exp(-10))
    torch.testing.assert_close(summary_loss(logits, labels, "mean"), torch.tensor(total / 3))
    torch.testing.assert_close(summary_loss(logits, labels, "sum"), torch.tensor(total / 2))
    assert summary_loss(logits, torch.full((3, 2), IGNORE_INDEX), "mean") == 0
    with pytest.raises(ValueError, match="summary_loss_reduction"):
        summary_loss(logits, labels, "max")


# -------------------------------------------------------------------------------------------------- sampling
def test_negatives_without_replacement_when_enough_with_replacement_when_fewer():
    neg_items = torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0], [0, 0, 0, 0]])
    seen = set()
    for seed in range(20):
        torch.manual_seed(seed)
        picked, valid = draw_negatives(neg_items, 2)
        assert len(set(picked[0].tolist())) == 2 and set(picked[0].tolist()) <= {5, 6, 7}
        assert picked[1].tolist() == [8, 8]
        assert picked[2].tolist() == [0, 0] and valid.tolist() == [[True, True], [True, True], [False, False]]
        seen |= set(picked[0].tolist())
    assert seen == {5, 6, 7}  # every impression negative can be drawn
    torch.manual_seed(3)
    first = draw_negatives(neg_items, 3)[0]
    torch.manual_seed(3)
    assert torch.equal(draw_negatives(neg_items, 3)[0], first)
    assert draw_negatives(torch.zeros(2, 0, dtype=torch.long), 2)[1].sum() == 0


# ---------------------------------------------------------------------------------------------- sessions (2.3)
def test_recent_first_reverses_and_truncates_to_k():
    seq = torch.tensor([[1, 2, 3, 0], [4, 0, 0, 0], [0, 0, 0, 0]])
    lengths = torch.tensor([3, 1, 0])
    assert recent_first(seq, lengths, 3).tolist() == [[3, 2, 1], [4, 0, 0], [0, 0, 0]]
    assert recent_first(seq, lengths, 2).tolist() == [[3, 2], [4, 0], [0, 0]]
    assert recent_first(seq, lengths, 5).tolist() == [[3, 2, 1, 0, 0], [4, 0, 0, 0, 0], [0] * 5]


def test_pack_sessions_packs_items_contiguously_and_skips_empty_sessions():
    # item i's row: [SOS=9, i*10, i*10+1, EOS=1] cut to its length; item 2 has 3 tokens, item 3 has 4
    tokens = torch.tensor([[9, 1, 0, 0], [9, 10, 1, 0], [9, 20, 1, 0], [9, 30, 31, 1]])
    lengths = torch.tensor([2, 3, 3, 4])
    history = torch.tensor([[3, 2, 1], [0, 0, 0]])  # most recent first; the second user has no history
    packed = pack_sessions(history, 2, tokens, lengths, pad_id=0)
    assert packed.owner.tolist() == [0, 1] and packed.n_slots == 4  # sessions (3, 2) and (1,)
    assert packed.tokens.tolist() == [[9, 30, 31, 1, 9, 20, 1], [9, 10, 1, 0, 0, 0, 0]]
    assert packed.mask.sum(1).tolist() == [7, 3]
    assert packed.starts.tolist() == [[0, 4], [0, 0]]  # a padding item starts at 0 (its state is masked)
    empty = pack_sessions(history[1:], 2, tokens, lengths, pad_id=0)
    assert empty.owner.numel() == 0 and empty.tokens.shape == (0, 1)


def test_pack_sessions_padding_starts_stay_inside_a_partly_filled_widest_session():
    tokens = torch.tensor([[9, 1, 0], [9, 10, 1], [9, 20, 1]])  # item i: [SOS=9, ..., EOS=1]
    lengths = torch.tensor([2, 3, 3])
    packed = pack_sessions(torch.tensor([[2, 0, 0]]), 3, tokens, lengths, pad_id=0)
    assert packed.tokens.tolist() == [[9, 20, 1]]
    assert packed.starts.tolist() == [[0, 0, 0]]  # not [[0, 3, 3]]: one past the session's last token
    states = torch.arange(3.0)[None, :, None]  # [S=1, T=3, d=1]
    assert states.gather(1, packed.starts[..., None]).flatten().tolist() == [0.0, 0.0, 0.0]


# -------------------------------------------------------------------------------------------------------- text
@pytest.fixture(scope="module")
def tokenizer():
    corpus = ["News Title: goal coach season; News Abstract: stocks market bank; News Category: sports"] * 20
    return train_tokenizer(corpus + ["The user likes sports."] * 5, vocab_size=120)


def test_truncation_keeps_verbatim_prefix_of_cap_tokens(tokenizer):
    text = "goal coach season stocks market bank"
    cut = truncate_to_tokens([text, "goal"], tokenizer, 4)
    assert text.startswith(cut[0]) and cut[1] == "goal"
    assert len(tokenizer(cut[0], add_special_tokens=False).input_ids) == 4


def test_render_items_fills_template_and_reports_unknown_fields(tokenizer):
    record = {"item_id": "N1", "title": "goal coach season", "abstract": "stocks market bank", "category": "sports",
              "subcategory": ""}
    out = render_items([record], "T: {title} | C: {category}", tokenizer, 100, 100)
    assert out == ["T: goal coach season | C: sports"]
    with pytest.raises(ValueError, match="unknown field 'author'"):
        render_items([record], "{author}", tokenizer, 10, 10)


def test_item_token_table_rows_and_missing_text(tokenizer):
    texts = {"N1": {"item_id": "N1", "title": "goal", "abstract": "bank", "category": "sports", "subcategory": ""}}
    table, lengths = build_item_token_table(["[PAD]", "N1"], texts, "x.text.jsonl", tokenizer, "{title} {abstract}",
                                            8, 8)
    sos = tokenizer.convert_tokens_to_ids(ITEM_START_TOKEN)
    assert table[0, :2].tolist() == [sos, tokenizer.eos_token_id] and lengths[0] == 2
    assert table[1, 0] == sos and table[1, lengths[1] - 1] == tokenizer.eos_token_id
    assert tokenizer.decode(table[1, : lengths[1]], skip_special_tokens=True) == "goal bank"
    with pytest.raises(ValueError, match=r"x\.text\.jsonl: no text for 1 of 2 dataset items \(e.g. item_id N2\)"):
        build_item_token_table(["[PAD]", "N1", "N2"], texts, "x.text.jsonl", tokenizer, "{title}", 8, 8)


def test_item_rows_are_cut_only_at_the_title_and_abstract_caps(tokenizer):
    """Paper Section 3 (Goodreads): titles 24 tokens, descriptions 85, plus the template and the genre; a long genre
    and the whole capped description stay in the row however the sessions are sized."""
    words = "goal coach season stocks market bank".split()
    record = {"item_id": "B1", "title": " ".join(words * 10), "abstract": " ".join(reversed(words * 30)),
              "category": "sports market bank coach goal season stocks", "subcategory": ""}
    template = "News Title: {title}; News Abstract: {abstract}; News Category: {category}"  # words the tokenizer knows
    table, lengths = build_item_token_table(["[PAD]", "B1"], {"B1": record}, "x.text.jsonl", tokenizer, template, 24, 85)
    row = table[1, : lengths[1]]
    expected = template.format(title=truncate_to_tokens([record["title"]], tokenizer, 24)[0],
                               abstract=truncate_to_tokens([record["abstract"]], tokenizer, 85)[0],
                               category=record["category"])
    assert tokenizer.decode(row, skip_special_tokens=True) == expected  # nothing but title and abstract was cut
    assert row[-1] == tokenizer.eos_token_id
    assert expected.endswith("News Category: sports market bank coach goal season stocks")
    template_tokens = len(tokenizer(template.format(title="", abstract="", category=record["category"]),
                                    add_special_tokens=False).input_ids)
    assert 24 + 85 < len(row) <= 24 + 85 + template_tokens + 2  # [SOS] + capped text + template + </s>
    assert len(row) > 512 // 4  # the old cap, a quarter of a 512-token session, cut description and genre


def test_summary_table_marks_users_without_summary(tokenizer):
    table, lengths = build_summary_token_table(["[PAD]", "U1", "U2"], {"U2": "The user likes sports."}, tokenizer, 20)
    ids = tokenizer("The user likes sports.", add_special_tokens=False).input_ids
    assert len(ids) < 20 and lengths.tolist() == [0, 0, len(ids) + 1]
    assert table[2, : len(ids) + 1].tolist() == ids + [tokenizer.eos_token_id]


def test_a_summary_cut_at_the_cap_does_not_end_in_eos(tokenizer):
    summary = "The user likes sports. The user likes goal coach season stocks market bank."
    ids = tokenizer(summary, add_special_tokens=False).input_ids
    table, lengths = build_summary_token_table(["[PAD]", "U1"], {"U1": summary}, tokenizer, len(ids) - 2)
    assert lengths[1] == len(ids) - 2 and table[1, : lengths[1]].tolist() == ids[: len(ids) - 2]  # no </s>
    table, lengths = build_summary_token_table(["[PAD]", "U1"], {"U1": summary}, tokenizer, len(ids))
    assert table[1, : lengths[1]].tolist() == ids  # no room left for </s>: the target stops without it
    table, lengths = build_summary_token_table(["[PAD]", "U1"], {"U1": summary}, tokenizer, len(ids) + 1)
    assert table[1, : lengths[1]].tolist() == ids + [tokenizer.eos_token_id]  # fits with its </s>
    with pytest.raises(ValueError, match="summary_max_tokens must be >= 1"):
        build_summary_token_table(["[PAD]", "U1"], {"U1": summary}, tokenizer, 0)


def test_item_text_errors_name_file_line_and_field(tmp_path):
    path = tmp_path / "d.text.jsonl"
    path.write_text(json.dumps({"item_id": "N1", "title": "x"}) + "\n\n" + json.dumps({"title": "y"}) + "\n")
    with pytest.raises(ItemTextError, match=r"d\.text\.jsonl, line 3, field 'item_id': missing"):
        load_item_texts(str(path))
    path.write_text('{"item_id": "N1"}\n{oops\n')
    with pytest.raises(ItemTextError, match=r"d\.text\.jsonl, line 2: not valid JSON"):
        load_item_texts(str(path))
    path.write_text('{"item_id": "N1", "title": 3}\n')
    with pytest.raises(ItemTextError, match=r"line 1, field 'title': expected a string, got int"):
        load_item_texts(str(path))
    path.write_text('{"item_id": "N1", "abstract": null, "entities": [1]}\n')
    assert load_item_texts(str(path))["N1"] == {"item_id": "N1", "title": "", "abstract": "", "category": "",
                                                 "subcategory": "", "entities": [1]}
