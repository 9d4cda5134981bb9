"""EmbSum on histories of every length, alone and in mixed batches: a partly filled widest session must neither
crash the session gather nor change a user's vectors. Predict, generate_summary and export of cold-start users
(the paths `recommend` and `export --users` take), tiny offline T5 on the converted synthetic MIND."""
import json
import os
import shutil

import pytest
import torch
from recbole.config import Config
from recbole.data import create_dataset
from recbole.data.interaction import Interaction

from conftest import MIND_YAML, MODEL_YAML, TINY_EMBSUM

from recbole_embsum.model import EmbSum
from recbole_embsum.serving.export import export_model
from recbole_embsum.serving.store import EmbeddingStore

SESSION = 3
K = 8  # k > 2 * p: lengths 0..2p stay within the history window, 2p + 2 exceeds it
TINY = {
    **TINY_EMBSUM,
    "session_size": SESSION,
    "summary_max_tokens": 10,
    "MAX_ITEM_LIST_LENGTH": K,
    "eval_batch_size": 256,
    "metrics": ["AUC"],
    "valid_metric": "AUC",
    "device": "cpu",
    "state": "WARNING",
}


@pytest.fixture(scope="module")
def model_and_data(mind_dataset, tmp_path_factory):
    """(EmbSum in eval mode with ``eval_global_vector: generate`` active, dataset, config)."""
    source, name = mind_dataset
    root = tmp_path_factory.mktemp("short_histories")
    shutil.copytree(os.path.join(source, name), root / name)  # the tokenizer cache is written beside the data
    with open(root / name / "mind.train.inter", encoding="utf-8") as handle:
        next(handle)
        users = sorted({line.split("\t")[1] for line in handle})[:5]
    with open(root / name / "mind.summaries.jsonl", "w", encoding="utf-8") as handle:
        for user in users:  # a few summaries, so that inference decodes its own summary (the default path)
            handle.write(json.dumps({"user_id": user, "summary": "The user reads sports and finance news.",
                                     "backend": "test", "model": "test", "prompt_hash": "0"}) + "\n")
    config = Config(model=EmbSum, dataset=name, config_file_list=[MIND_YAML, MODEL_YAML],
                    config_dict={"data_path": str(root), **TINY})
    dataset = create_dataset(config)
    torch.manual_seed(0)
    model = EmbSum(config, dataset).eval()
    assert model._inference_generates()
    return model, dataset, config


def histories(lengths, n_items, seed=0):
    """[B, K] chronological histories of the given lengths (0-padded at the end), distinct random items."""
    generator = torch.Generator().manual_seed(seed)
    seq = torch.zeros(len(lengths), K, dtype=torch.long)
    for row, length in enumerate(lengths):
        kept = min(length, K)
        seq[row, :kept] = torch.randperm(n_items - 1, generator=generator)[:kept] + 1
    return seq, torch.tensor([min(length, K) for length in lengths])


@pytest.mark.parametrize("length", range(0, 2 * SESSION + 3))
def test_every_history_length_alone_through_predict_and_generate(model_and_data, length):
    model, dataset, _ = model_and_data
    seq, seq_len = histories([length], dataset.item_num)
    rows = Interaction({"item_id_list": seq.expand(3, -1), "item_length": seq_len.expand(3),
                        "item_id": torch.tensor([1, 2, 3]), "user_id": torch.tensor([1, 1, 1])})
    with torch.no_grad():
        scores = model.predict(rows)  # one history: its widest session is the only one
        poly = model.user_poly_embeddings(seq, seq_len)
    assert scores.shape == (3,) and torch.isfinite(scores).all()
    assert poly.shape == (1, TINY["upe_codes"], TINY["plm_config"]["d_model"]) and torch.isfinite(poly).all()
    summary = model.generate_summary(seq, seq_len)
    assert len(summary) == 1 and isinstance(summary[0], str)
    history = model.encode_history(seq, seq_len)
    assert history.item_mask.sum().item() == min(length, K)
    assert (history.item_vectors[~history.item_mask] == 0).all()  # padding items carry no state


def test_user_vectors_in_a_mixed_batch_equal_each_user_encoded_alone(model_and_data):
    """Property over random lengths 0..k+2 (seeded): batching never changes a user's embedding or summary."""
    model, dataset, _ = model_and_data
    for seed in range(3):
        lengths = torch.randint(0, K + 3, (12,), generator=torch.Generator().manual_seed(seed)).tolist()
        seq, seq_len = histories(lengths, dataset.item_num, seed=seed)
        with torch.no_grad():
            together = model.user_poly_embeddings(seq, seq_len)  # [12, m, d]
            history = model.encode_history(seq, seq_len)
            for row in range(len(lengths)):
                alone = model.user_poly_embeddings(seq[row: row + 1], seq_len[row: row + 1])[0]
                torch.testing.assert_close(together[row], alone, rtol=1e-5, atol=1e-5,
                                           msg=f"seed {seed}, length {lengths[row]}")
                single = model.encode_history(seq[row: row + 1], seq_len[row: row + 1])
                torch.testing.assert_close(history.item_vectors[row], single.item_vectors[0], rtol=1e-5, atol=1e-5)
        texts = model.generate_summary(seq, seq_len)
        assert texts == [model.generate_summary(seq[row: row + 1], seq_len[row: row + 1])[0]
                         for row in range(len(lengths))]


def test_export_users_of_every_history_length(model_and_data, tmp_path):
    """`export --users`: cold-start users with 0..2p+2 history items, written one per batch (each alone) and all in
    one batch, store the same vectors as the model computes for each user alone."""
    model, dataset, config = model_and_data
    items = [str(token) for token in dataset.field2id_token["item_id"][1:]]
    lengths = range(0, 2 * SESSION + 3)
    behaviors = tmp_path / "behaviors.tsv"
    behaviors.write_text("".join(f"{n}\tU{n}\t11/15/2019 8:00:00 AM\t{' '.join(items[:n])}\t{items[0]}-1\n"
                                 for n in lengths), encoding="utf-8")
    stores = {}
    for batch_size in (1, 64):
        folder = tmp_path / f"export_{batch_size}"
        export_model(model, config, dataset, str(folder),
                     users_file=str(behaviors), summaries=True, batch_size=batch_size)
        stores[batch_size] = EmbeddingStore(folder)
    ids = dataset.field2token_id["item_id"]
    for n in lengths:
        kept = [ids[item] for item in items[:n]][-K:]
        seq = torch.zeros(1, max(1, len(kept)), dtype=torch.long)
        seq[0, : len(kept)] = torch.tensor(kept, dtype=torch.long)
        with torch.no_grad():
            expected = model.user_poly_embeddings(seq, torch.tensor([len(kept)]))[0]
        for store in stores.values():
            torch.testing.assert_close(store.user_poly(f"U{n}"), expected, rtol=1e-5, atol=1e-5)
            assert store.summary(f"U{n}") == model.generate_summary(seq, torch.tensor([len(kept)]))[0]
