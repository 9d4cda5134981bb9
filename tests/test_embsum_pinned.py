"""EmbSum's loss and scores on a fixed seed, pinned to the values the model gave before its shared parts (item text
store, tokenizer and backbone loading, NCE, per-impression evaluation batching) moved into their own modules.

A refactoring must leave these numbers unchanged. Change the pinned values only with a change that is meant to alter
what EmbSum computes, and say so in its commit message.
"""
import json

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from recbole.config import Config
from recbole.data import create_dataset, data_preparation

from conftest import MIND_YAML, MODEL_YAML

from recbole_embsum.model import EmbSum

PINNED_CONFIG = {
    "plm_init": "scratch",
    "plm_config": {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2, "d_kv": 16},
    "tokenizer_vocab_size": 300,
    "upe_codes": 4,
    "cpe_codes": 2,
    "session_size": 2,
    "summary_max_tokens": 24,
    "title_max_tokens": 8,
    "abstract_max_tokens": 12,
    "train_neg_num": 3,
    "MAX_ITEM_LIST_LENGTH": 6,
    "train_batch_size": 8,
    "grad_accum_steps": 1,
    "eval_batch_size": 32,
    "item_encode_batch_size": 16,
    "metrics": ["AUC"],
    "valid_metric": "AUC",
    "seed": 0,
    "reproducibility": True,
    "state": "WARNING",
    "show_progress": False,
    "device": "cpu",
}

# Computed on the code before the move (same data, config and seeds).
PINNED_LOSS = (1.8788154, 0.35112354)  # (L_NCE, lambda * L_sum) of the first training batch, torch.manual_seed(0)
PINNED_PREDICT = [2.9132978, 5.5217107, 3.8827903, 2.3027110, 3.9957540, 4.5830941, 5.6259117, 1.1806020]  # predict() of the first 8 rows of the first validation batch
PINNED_FULL_SORT = [  # full_sort_predict() of the batch's first and last rows, items 1..5
    [2.1457725, 5.0652795, 4.0659504, 2.4140520, 5.3511791],
    [1.7442729, 3.9682796, 2.6360986, 1.8341670, 4.1897836],
]
PINNED_LOSS_AFTER_STEP = 0.56993854  # sum of both parts after one Adam step (lr 1e-2), same batch and seed


def word_tokenizer(texts):
    """A deterministic word-level tokenizer of ``texts``, standing in for the scratch tokenizer trainer (the Unigram
    trainer that ``plm_init: scratch`` uses is not deterministic from run to run, so it cannot be pinned)."""
    split = pre_tokenizers.Whitespace()  # words and runs of punctuation
    words = sorted({word for text in texts for word, _ in split.pre_tokenize_str(text)})
    vocab = {token: i for i, token in enumerate(["<pad>", "</s>", "<unk>", "[SOS]"] + words)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = split
    tokenizer.decoder = decoders.WordPiece()  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


@pytest.fixture(scope="module")
def pinned(tmp_path_factory, synth_mind_raw):
    """(model built under torch.manual_seed(0), first training batch, first validation batch)."""
    from dataset_converters.impressions import ConvertOptions
    from dataset_converters.mind import convert_mind

    root = tmp_path_factory.mktemp("pinned")
    # The split the values were pinned on (half of MIND dev in valid), whatever the converter's default, and the inline
    # layout, whose batches carry every stored impression negative, so L_NCE depends on EmbSum's own draw alone (the
    # history store's loader draws train_neg_num of them first, with its own seeded generator).
    convert_mind(synth_mind_raw, root, ConvertOptions(name="mind", layout="inline"), valid_fraction=0.5)
    with open(root / "mind" / "mind.train.inter", encoding="utf-8") as handle:
        next(handle)
        users = sorted({line.split("\t")[1] for line in handle})
    summaries = {user: f"The user reads news number {number} about sports and politics."
                 for number, user in enumerate(users[::3])}
    with open(root / "mind" / "mind.summaries.jsonl", "w", encoding="utf-8") as handle:
        for user, summary in summaries.items():
            handle.write(json.dumps({"user_id": user, "summary": summary, "backend": "test", "model": "test",
                                     "prompt_hash": "0"}) + "\n")
    with open(root / "mind" / "mind.text.jsonl", encoding="utf-8") as handle:
        texts = [" ".join(str(value) for value in json.loads(line).values()) for line in handle]
    template = "News Title: ; News Abstract: ; News Category:"
    vocabulary = texts + list(summaries.values()) + [template]
    config = Config(model=EmbSum, dataset="mind", config_file_list=[MODEL_YAML, MIND_YAML],
                    config_dict={"data_path": str(root), **PINNED_CONFIG})
    dataset = create_dataset(config)
    train, valid, _ = data_preparation(config, dataset)
    torch.manual_seed(0)
    with pytest.MonkeyPatch.context() as patch:  # cached (and re-read) like a trained one
        patch.setattr("recbole_embsum.text.backbone.train_tokenizer",
                      lambda corpus, vocab_size, scheme=None: word_tokenizer(vocabulary))
        model = EmbSum(config, dataset)
    return model, next(iter(train)), next(iter(valid))[0]


def test_loss_and_scores_are_unchanged(pinned):
    model, batch, rows = pinned
    model.train()
    torch.manual_seed(0)
    nce, summary = model.calculate_loss(batch)
    torch.testing.assert_close([nce.item(), summary.item()], list(PINNED_LOSS), rtol=1e-4, atol=1e-5)

    model.eval()
    with torch.no_grad():
        scores = model.predict(rows[:8])
        grid = model.full_sort_predict(rows[torch.tensor([0, len(rows) - 1])])
    torch.testing.assert_close(scores.tolist(), PINNED_PREDICT, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grid[:, 1:6].tolist(), PINNED_FULL_SORT, rtol=1e-4, atol=1e-5)


def test_loss_after_one_step_is_unchanged(pinned):
    model, batch, _ = pinned
    state = {key: value.clone() for key, value in model.state_dict().items()}
    try:
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        torch.manual_seed(0)
        sum(model.calculate_loss(batch)).backward()
        optimizer.step()
        torch.manual_seed(0)
        with torch.no_grad():
            after = float(sum(model.calculate_loss(batch)))
    finally:
        model.load_state_dict(state)
    torch.testing.assert_close(after, PINNED_LOSS_AFTER_STEP, rtol=1e-4, atol=1e-5)
