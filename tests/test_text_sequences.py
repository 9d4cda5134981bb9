"""Assembling "history text + candidate text" token inputs from per-item token rows (text/sequences.py)."""
import torch

from recbole_embsum.text.sequences import build_item_rows, concat, pack_items, special

# item 0 = padding; item i has tokens 10*i + 1, 10*i + 2, ... (lengths 2, 3, 1)
TABLE = torch.tensor([[0, 0, 0], [11, 12, 0], [21, 22, 23], [31, 0, 0]])
LENGTHS = torch.tensor([0, 2, 3, 1])


def test_pack_items_lays_items_back_to_back_with_slots_local_positions_and_budget():
    items = torch.tensor([[2, 1, 0], [3, 0, 0], [0, 0, 0]])
    packed = pack_items(items, TABLE, LENGTHS)
    assert packed.tokens.tolist() == [[21, 22, 23, 11, 12], [31, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
    assert packed.mask.sum(1).tolist() == [5, 1, 0]
    assert packed.slot[0].tolist() == [0, 0, 0, 1, 1]
    assert packed.local[0].tolist() == [0, 1, 2, 0, 1]

    cut = pack_items(items, TABLE, LENGTHS, budget=torch.tensor([4, 4, 4]))  # item 1 is cut after its 1st token
    assert cut.tokens[0].tolist() == [21, 22, 23, 11] and cut.lengths.tolist() == [4, 1, 0]
    # a padding item in the middle adds nothing
    gap = pack_items(torch.tensor([[1, 0, 3]]), TABLE, LENGTHS)
    assert gap.tokens.tolist() == [[11, 12, 31]] and gap.slot.tolist() == [[0, 0, 2]]


def test_concat_joins_pieces_without_inner_padding_and_marks_their_parts():
    history = pack_items(torch.tensor([[2, 1], [3, 0]]), TABLE, LENGTHS)
    candidate = pack_items(torch.tensor([[3], [1]]), TABLE, LENGTHS)
    joined = concat([special(101, 2), candidate, special(102, 2), history, special(102, 2)], pad_id=-7)
    assert joined.tokens.tolist() == [[101, 31, 102, 21, 22, 23, 11, 12, 102],
                                      [101, 11, 12, 102, 31, 102, -7, -7, -7]]
    assert joined.part.tolist() == [[0, 1, 2, 3, 3, 3, 3, 3, 4], [0, 1, 1, 2, 3, 4, -1, -1, -1]]
    assert joined.slot[0].tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 0]
    assert joined.local[1].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0]
    # a row is the same whatever else is in the batch
    alone = concat([special(101, 1), pack_items(torch.tensor([[1]]), TABLE, LENGTHS),
                    special(102, 1), pack_items(torch.tensor([[3]]), TABLE, LENGTHS), special(102, 1)], pad_id=-7)
    assert alone.tokens[0].tolist() == joined.tokens[1, :6].tolist()
    assert concat([special(1, 2), history], pad_id=0, max_tokens=3).tokens.tolist() == [[1, 21, 22], [1, 31, 0]]


class _WhitespaceTokenizer:
    pad_token_id = 0

    def __init__(self):
        self.vocab = {}

    def __call__(self, texts, add_special_tokens=False, return_offsets_mapping=False):
        ids, offsets = [], []
        for text in texts:
            words, spans, start = text.split(), [], 0
            for word in words:
                start = text.index(word, start)
                spans.append((start, start + len(word)))
                start += len(word)
            ids.append([self.vocab.setdefault(word, len(self.vocab) + 5) for word in words])
            offsets.append(spans)
        return {"input_ids": ids, "offset_mapping": offsets}


def test_build_item_rows_renders_caps_and_appends_the_suffix():
    texts = {"a": {"title": "one two three", "abstract": "x"}, "b": {"title": "four", "abstract": ""}}
    tokenizer = _WhitespaceTokenizer()
    table, lengths, rendered = build_item_rows(["[PAD]", "b", "a"], texts, "t.jsonl", tokenizer, "{title}", 2, 5,
                                               suffix=[2])
    assert lengths.tolist() == [0, 2, 3] and rendered == ["", "four", "one two"]
    assert table[2, 2].item() == 2 and table[1, 1].item() == 2 and table[0].tolist() == [0, 0, 0]
