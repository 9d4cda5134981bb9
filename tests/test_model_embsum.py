"""EmbSum inside RecBole on a tiny converted-MIND-like dataset: shapes, gradients, learning, ablations, caches,
save/reload and the offline/pretrained backbone paths. Tiny T5 (d_model 32, 1 layer, ~300-token vocabulary)."""
import itertools
import json
import os
import shutil

import pytest
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from conftest import MIND_YAML, MODEL_YAML, TINY_EMBSUM
from dataset_converters.store import open_store

from recbole_embsum.model import EmbSum
from recbole_embsum.model.losses import IGNORE_INDEX
from recbole_embsum.text.backbone import (TOKENIZER_META, build_scratch_t5, load_or_train_tokenizer,
                                          tokenizer_cache_dir, tokenizer_cache_key, tokenizer_cache_path)

TINY = {
    **TINY_EMBSUM,
    "session_size": 2,
    "summary_max_tokens": 24,
    "title_max_tokens": 8,
    "abstract_max_tokens": 12,
    "train_neg_num": 3,
    "MAX_ITEM_LIST_LENGTH": 6,
    "train_batch_size": 8,
    "eval_batch_size": 64,
    "item_encode_batch_size": 16,
    "metrics": ["AUC"],
    "valid_metric": "AUC",
    "seed": 0,
    "reproducibility": True,
    "state": "WARNING",
}


def copy_with_summaries(source_root, target_root):
    """Copy the converted synthetic MIND (the shared fixture is read-only; the tokenizer cache is written beside
    the data) and write a summary for every other user, naming the categories of the user's history."""
    shutil.copytree(os.path.join(source_root, "mind"), os.path.join(target_root, "mind"),
                    ignore=shutil.ignore_patterns("*.tokenizer"))  # other tests' tokenizers: only this module's here
    folder = os.path.join(target_root, "mind")
    with open(os.path.join(folder, "mind.text.jsonl"), encoding="utf-8") as handle:
        category = {record["item_id"]: record["category"] for record in map(json.loads, handle)}
    histories = {}
    with open(os.path.join(folder, "mind.train.inter"), encoding="utf-8") as handle:
        next(handle)
        for line, history in zip(handle, open_store(folder, "mind").row_histories("train")):
            histories[line.split("\t")[1]] = history.split()
    with open(os.path.join(folder, "mind.summaries.jsonl"), "w", encoding="utf-8") as handle:
        for user in sorted(histories)[::2]:
            topics = sorted({category[item] for item in histories[user]}) or ["nothing yet"]
            handle.write(json.dumps({"user_id": user, "summary": "The user reads about " + ", ".join(topics) + ".",
                                     "backend": "test", "model": "test", "prompt_hash": "0"}) + "\n")
    return {user for user in sorted(histories)[::2]}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, mind_dataset):
    root = tmp_path_factory.mktemp("embsum_data")
    copy_with_summaries(mind_dataset[0], root)
    return root


def make_config(data_root, **overrides):
    return Config(model=EmbSum, dataset="mind", config_file_list=[MODEL_YAML, MIND_YAML],
                  config_dict={"data_path": str(data_root), **TINY, "device": "cpu", **overrides})


@pytest.fixture(scope="module")
def prepared(data_root):
    """(config, dataset, train, valid, test, data_root)."""
    config = make_config(data_root)
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    return config, dataset, train, valid, test, data_root


def make_model(prepared, seed=0, **overrides):
    config = make_config(prepared[5], **overrides) if overrides else prepared[0]
    torch.manual_seed(seed)
    return EmbSum(config, prepared[1])


def train_batch(prepared):
    return next(iter(prepared[2]))


def valid_batch(prepared):
    return next(iter(prepared[3]))[0]


# --------------------------------------------------------------------------------------------------- data/text
def test_item_token_table_is_built_once_with_sos_and_caps(prepared):
    model = make_model(prepared)
    sos = model.tokenizer.convert_tokens_to_ids("[SOS]")
    assert model.item_tokens.shape[0] == prepared[1].item_num
    assert (model.item_tokens[:, 0] == sos).all()  # every item segment starts with [SOS]
    assert "item_tokens" not in model.state_dict()  # non-persistent buffer, rebuilt from data
    raw = prepared[1].field2id_token["item_id"][3]
    text = model.tokenizer.decode(model.item_tokens[3, : model.item_token_lengths[3]], skip_special_tokens=True)
    with open(os.path.join(prepared[0]["data_path"], "mind.text.jsonl"), encoding="utf-8") as handle:
        record = next(r for r in map(json.loads, handle) if r["item_id"] == raw)
    assert text.startswith("News Title: ") and f"News Category: {record['category']}" in text
    assert text.endswith(f"News Category: {record['category']}")  # the category is never cut
    assert model.max_item_tokens == int(model.item_token_lengths.max())


def _no_training(*args, **kwargs):
    raise AssertionError("the tokenizer was trained again instead of read from its cache")


def test_tokenizer_cache_is_keyed_by_vocab_size_and_reused(prepared, monkeypatch):
    small = make_model(prepared)
    key = tokenizer_cache_key([], 300)  # for the version and model parts
    folders = sorted(os.listdir(tokenizer_cache_dir(prepared[0]["data_path"], "mind")))
    metas = {}
    for folder in folders:
        with open(os.path.join(tokenizer_cache_dir(prepared[0]["data_path"], "mind"), folder, TOKENIZER_META),
                  encoding="utf-8") as handle:
            metas[folder] = json.load(handle)
    (cached,) = [meta for meta in metas.values() if meta["tokenizer_vocab_size"] == 300]
    assert {k: cached[k] for k in ("tokenizers_version", "model")} == {k: key[k] for k in ("tokenizers_version", "model")}
    assert len(cached["corpus_sha256"]) == 64
    large = make_model(prepared, tokenizer_vocab_size=400)  # another configuration on the same data: no error
    assert small.tokenizer.get_vocab() != large.tokenizer.get_vocab()
    assert len(large.tokenizer) > len(small.tokenizer)
    monkeypatch.setattr("recbole_embsum.text.backbone.train_tokenizer", _no_training)
    assert make_model(prepared).tokenizer.get_vocab() == small.tokenizer.get_vocab()  # each read from its own folder
    assert make_model(prepared, tokenizer_vocab_size=400).tokenizer.get_vocab() == large.tokenizer.get_vocab()


def test_tokenizer_cache_key_follows_the_text_and_a_foreign_folder_is_retrained(tmp_path, monkeypatch):
    corpus = ["News Title: storms hit the coast; News Category: weather", "The user reads about sports."] * 20
    changed = corpus[:-1] + ["The user reads about politics."]
    key = tokenizer_cache_key(corpus, 60)
    assert tokenizer_cache_key(iter(corpus), 60) == key  # streamed: any iterable, same key
    assert tokenizer_cache_key(changed, 60)["corpus_sha256"] != key["corpus_sha256"]
    assert tokenizer_cache_key(["ab", "c"], 60) != tokenizer_cache_key(["a", "bc"], 60)
    folder = tokenizer_cache_path(str(tmp_path), "mind", key)
    assert tokenizer_cache_path(str(tmp_path), "mind", tokenizer_cache_key(changed, 60)) != folder
    assert tokenizer_cache_path(str(tmp_path), "mind", tokenizer_cache_key(corpus, 61)) != folder
    assert os.path.dirname(folder) == tokenizer_cache_dir(str(tmp_path), "mind")

    load_or_train_tokenizer(str(tmp_path), "mind", lambda: iter(corpus), 60)
    with open(os.path.join(folder, TOKENIZER_META), encoding="utf-8") as handle:
        assert json.load(handle) == key
    stamp = os.stat(os.path.join(folder, TOKENIZER_META)).st_mtime_ns
    load_or_train_tokenizer(str(tmp_path), "mind", lambda: iter(corpus), 60)
    assert os.stat(os.path.join(folder, TOKENIZER_META)).st_mtime_ns == stamp  # hit: not rewritten
    load_or_train_tokenizer(str(tmp_path), "mind", lambda: iter(changed), 60)  # new text: its own folder
    assert len(os.listdir(tokenizer_cache_dir(str(tmp_path), "mind"))) == 2

    with open(os.path.join(folder, TOKENIZER_META), "w", encoding="utf-8") as handle:
        json.dump({**key, "tokenizer_vocab_size": 59}, handle)  # a folder whose key is not ours: train, don't raise
    load_or_train_tokenizer(str(tmp_path), "mind", lambda: iter(corpus), 60)
    with open(os.path.join(folder, TOKENIZER_META), encoding="utf-8") as handle:
        assert json.load(handle) == key
    assert not [name for name in os.listdir(tokenizer_cache_dir(str(tmp_path), "mind")) if name.startswith(".")]


def test_summaries_are_tokenized_for_users_that_have_one(prepared):
    model = make_model(prepared)
    tokens = list(prepared[1].field2id_token["user_id"])
    with open(os.path.join(prepared[0]["data_path"], "mind.summaries.jsonl"), encoding="utf-8") as handle:
        summaries = {r["user_id"]: r["summary"] for r in map(json.loads, handle)}
    assert 0 < model.n_summaries == len(set(summaries) & set(tokens)) < len(tokens) - 1
    for uid, raw in enumerate(tokens):
        assert bool(model.summary_lengths[uid] > 0) == (raw in summaries)
    raw = sorted(set(summaries) & set(tokens))[0]
    ids = model.summary_tokens[tokens.index(raw), : model.summary_lengths[tokens.index(raw)]]
    assert ids[-1] == model.tokenizer.eos_token_id
    assert model.tokenizer.decode(ids, skip_special_tokens=True) == summaries[raw]


# ------------------------------------------------------------------------------------------------------ shapes
def test_shapes_at_every_step(prepared):
    model = make_model(prepared)
    batch = train_batch(prepared)
    d, k = 32, TINY["MAX_ITEM_LIST_LENGTH"]
    seq, seq_len = batch["item_id_list"], batch["item_length"]
    bsz = seq.size(0)
    history = model.encode_history(seq, seq_len)
    assert history.item_vectors.shape == (bsz, k, d)
    assert history.item_mask.shape == (bsz, k)
    assert history.item_mask.sum(1).tolist() == seq_len.clamp(max=k).tolist()
    assert history.fused.shape[0] == bsz and history.fused.shape[2] == d
    assert history.fused_mask.shape == history.fused.shape[:2]
    users = batch["user_id"]
    glob, logits, labels = model.decode_summary(history, model.summary_tokens[users], model.summary_lengths[users])
    steps = int(model.summary_lengths[users].max())
    assert glob.shape == (bsz, d)
    assert logits.shape == (bsz, steps, len(model.tokenizer)) and labels.shape == (bsz, steps)
    assert model.user_poly_embeddings(seq, seq_len).shape == (bsz, TINY["upe_codes"], d)
    assert model.item_poly_embeddings(batch["item_id"]).shape == (bsz, TINY["cpe_codes"], d)
    nce, sum_part = model.calculate_loss(batch)
    assert nce.shape == () and sum_part.shape == () and sum_part > 0
    rows = valid_batch(prepared)
    assert model.eval().predict(rows).shape == (len(rows),)
    assert model.full_sort_predict(rows).shape == (len(rows), prepared[1].item_num)


def test_item_vectors_are_sos_states_of_sessions_most_recent_first(prepared):
    """Item q of a session is the encoder state at its [SOS] inside the packed session text (Section 2.3)."""
    model = make_model(prepared).eval()
    seq = torch.tensor([[3, 5, 7, 0, 0, 0]])
    history = model.encode_history(seq, torch.tensor([3]))
    # sessions of 2, most recent first: (7, 5), (3,)
    rows = [model.item_tokens[i, : model.item_token_lengths[i]] for i in (7, 5)]
    session = torch.cat(rows)[None]
    states = model._encode(session, torch.ones_like(session, dtype=torch.bool))
    torch.testing.assert_close(history.item_vectors[0, 0], states[0, 0])
    torch.testing.assert_close(history.item_vectors[0, 1], states[0, len(rows[0])])
    alone = model.item_tokens[3, : model.item_token_lengths[3]][None]
    torch.testing.assert_close(history.item_vectors[0, 2], model._encode(alone, torch.ones_like(alone).bool())[0, 0])
    assert history.item_mask[0].tolist() == [True, True, True, False, False, False]
    assert int(history.fused_mask.sum()) == session.size(1) + alone.size(1)


def test_loss_parts_are_eq6_weighted_and_log_the_unscaled_summary_loss(prepared):
    """Eq. (6): the parts sum to L_NCE + lambda * L_sum; ``.logged`` is (L_NCE, L_sum), L_sum the per-token mean."""
    model = make_model(prepared, summary_weight=0.05).eval()  # no dropout: both passes see the same network
    batch = train_batch(prepared)
    parts = model.calculate_loss(batch)
    users = batch["user_id"]
    history = model.encode_history(batch["item_id_list"], batch["item_length"])
    _, logits, labels = model.decode_summary(history, model.summary_tokens[users], model.summary_lengths[users])
    token_nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")
    mean_over_tokens = token_nll[labels.flatten() != IGNORE_INDEX].mean()  # L_sum, summary_loss_reduction: mean
    torch.testing.assert_close(parts.logged[1], mean_over_tokens.detach())
    torch.testing.assert_close(parts[1], 0.05 * mean_over_tokens, rtol=1e-5, atol=1e-7)
    assert torch.equal(parts.logged[0], parts[0].detach()) and float(parts.logged[1]) > 1.0  # unscaled: ~ ln(vocab)


# ------------------------------------------------------------------------------------------------ learning
def test_gradients_reach_every_parameter_group(prepared):
    model = make_model(prepared)
    nce, sum_part = model.calculate_loss(train_batch(prepared))
    (nce + sum_part).backward()
    groups = {
        "encoder": model.t5.encoder.block[0].layer[0].SelfAttention.q.weight,
        "decoder": model.t5.decoder.block[0].layer[1].EncDecAttention.q.weight,
        "shared embedding": model.t5.shared.weight,
        "UPE codes": model.upe.codes, "UPE W^f": model.upe.proj.weight,
        "CPE codes": model.cpe.codes, "CPE W^o": model.cpe.proj.weight,
        "W^s": model.scorer.w_s.weight,
    }
    for name, param in groups.items():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_decoder_gets_gradient_through_global_vector_without_summary_loss(prepared):
    model = make_model(prepared, use_summary_loss=False)
    nce, sum_part = model.calculate_loss(train_batch(prepared))
    assert sum_part == 0
    nce.backward()
    assert model.t5.decoder.block[0].layer[0].SelfAttention.v.weight.grad.abs().sum() > 0


def test_loss_falls_on_synthetic_data(prepared):
    model = make_model(prepared)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batches = list(itertools.islice(prepared[2], 3))

    def total():
        torch.manual_seed(1)  # the same negatives each time
        with torch.no_grad():
            return sum(float(sum(model.calculate_loss(b))) for b in batches)

    model.train()
    before = total()
    for _ in range(8):
        for batch in batches:
            optimizer.zero_grad()
            sum(model.calculate_loss(batch)).backward()
            optimizer.step()
    assert total() < 0.7 * before


def test_negative_sampling_is_deterministic_under_torch_seed(prepared):
    model = make_model(prepared).eval()
    batch = train_batch(prepared)
    torch.manual_seed(5)
    first = model.calculate_loss(batch)
    torch.manual_seed(5)
    again = model.calculate_loss(batch)
    assert [x.item() for x in first] == [x.item() for x in again]


# ------------------------------------------------------------------------------------------------ ablations
def _shared_weights(prepared, **switch):
    """The default model and an ablated one carrying the same weights wherever their parameters coincide.

    Returns (base, ablated, names of base weights the ablated model has no same-shaped slot for)."""
    base = make_model(prepared).eval()
    ablated = make_model(prepared, seed=1, **switch).eval()
    own = ablated.state_dict()
    shared = {key: value for key, value in base.state_dict().items()
              if key in own and own[key].shape == value.shape}
    missing, _ = ablated.load_state_dict(shared, strict=False)
    assert set(missing) <= set(base.state_dict())  # the ablation adds no parameter of its own
    return base, ablated, sorted(set(base.state_dict()) - set(shared))


def test_wo_cpe_uses_sos_state_and_leaves_users_unchanged(prepared):
    base, ablated, dropped = _shared_weights(prepared, use_cpe=False)
    assert ablated.cpe is None and dropped == ["cpe.codes", "cpe.proj.weight"]
    items = torch.tensor([1, 4, 9])
    poly = ablated.item_poly_embeddings(items)
    tokens = ablated.item_tokens[items][:, : int(ablated.item_token_lengths[items].max())]
    mask = torch.arange(tokens.size(1))[None] < ablated.item_token_lengths[items][:, None]
    assert poly.shape == (3, 1, 32)
    torch.testing.assert_close(poly[:, 0], ablated._encode(tokens, mask)[:, 0])
    batch = train_batch(prepared)
    args = (batch["item_id_list"], batch["item_length"])
    torch.testing.assert_close(ablated.user_poly_embeddings(*args), base.user_poly_embeddings(*args))


def test_wo_grouping_encodes_each_item_alone_and_leaves_items_unchanged(prepared):
    base, ablated, dropped = _shared_weights(prepared, session_grouping=False)
    assert not dropped and ablated.session_size == 1
    seq, seq_len = torch.tensor([[3, 5, 7, 0, 0, 0]]), torch.tensor([3])
    history = ablated.encode_history(seq, seq_len)
    alone = ablated.item_tokens[5, : ablated.item_token_lengths[5]][None]
    torch.testing.assert_close(history.item_vectors[0, 1], ablated._encode(alone, torch.ones_like(alone).bool())[0, 0])
    grouped = base.encode_history(seq, seq_len)
    assert not torch.allclose(grouped.item_vectors[0, 1], history.item_vectors[0, 1])
    items = torch.tensor([2, 6])
    torch.testing.assert_close(ablated.item_poly_embeddings(items), base.item_poly_embeddings(items))
    assert torch.equal(ablated.item_tokens, base.item_tokens)  # item text does not depend on grouping


def test_wo_upe_has_a_single_user_vector_and_leaves_items_unchanged(prepared):
    base, ablated, dropped = _shared_weights(prepared, upe_codes=1)
    batch = train_batch(prepared)
    assert ablated.user_poly_embeddings(batch["item_id_list"], batch["item_length"]).shape[1] == 1
    assert dropped == ["upe.codes"]
    items = torch.tensor([2, 6])
    torch.testing.assert_close(ablated.item_poly_embeddings(items), base.item_poly_embeddings(items))
    history_a, history_b = (m.encode_history(batch["item_id_list"], batch["item_length"]) for m in (ablated, base))
    torch.testing.assert_close(history_a.item_vectors, history_b.item_vectors)


def test_wo_summary_loss_uses_start_token_only_and_leaves_encoders_unchanged(prepared):
    base, ablated, dropped = _shared_weights(prepared, use_summary_loss=False)
    assert not dropped
    batch = train_batch(prepared)
    torch.manual_seed(3)
    nce_a, sum_a = ablated.calculate_loss(batch)
    assert sum_a == 0
    history = ablated.encode_history(batch["item_id_list"], batch["item_length"])
    zeros = torch.zeros(len(batch), 1, dtype=torch.long)
    glob, logits, labels = ablated.decode_summary(history, zeros, torch.zeros(len(batch), dtype=torch.long))
    assert logits.shape[1] == 1 and (labels == IGNORE_INDEX).all()
    torch.testing.assert_close(ablated.global_from_start_token(history), glob)  # a summary of length 0
    expected = ablated._user_poly(history, glob)
    torch.testing.assert_close(ablated.user_poly_embeddings(batch["item_id_list"], batch["item_length"]), expected)
    items = torch.tensor([2, 6])
    torch.testing.assert_close(ablated.item_poly_embeddings(items), base.item_poly_embeddings(items))


def test_global_vectors_match_the_whole_t5_forward(prepared):
    """Each way to the global vector reads the decoder's last hidden state, as T5ForConditionalGeneration's own
    forward gives it, and decode_summary's logits are that forward's logits."""
    model = make_model(prepared).eval()
    batch = train_batch(prepared)
    users = batch["user_id"]
    with torch.no_grad():
        history = model.encode_history(batch["item_id_list"], batch["item_length"])
        targets, lengths = model.summary_tokens[users], model.summary_lengths[users]
        glob, logits, _ = model.decode_summary(history, targets, lengths)
        steps = logits.size(1)
        positions = torch.arange(steps)[None]
        full = model.t5(encoder_outputs=(history.fused,), attention_mask=history.fused_mask.long(),
                        decoder_input_ids=model.t5.prepare_decoder_input_ids_from_labels(targets[:, :steps]),
                        decoder_attention_mask=(positions < lengths.clamp(min=1)[:, None]).long(),
                        output_hidden_states=True)
        torch.testing.assert_close(logits, full.logits)
        last = full.decoder_hidden_states[-1]
        torch.testing.assert_close(glob, last[torch.arange(len(users)), (lengths - 1).clamp(min=0)])

        sequences = model._generate(history)  # [B, 1 + T]
        is_eos = sequences[:, 1:] == model.tokenizer.eos_token_id
        ends = torch.where(is_eos.any(1), is_eos.float().argmax(1), is_eos.size(1) - 1)
        forced, _, _ = model.decode_summary(history, sequences[:, 1:], ends + 1)
        torch.testing.assert_close(model.global_from_generated_summary(history), forced)


# -------------------------------------------------------------------------------------------------- evaluation
@pytest.mark.slow
def test_history_dedup_matches_naive_per_row_scoring(prepared):
    model = make_model(prepared).eval()
    rows = valid_batch(prepared)
    with torch.no_grad():
        fast = model.predict(rows)
        naive = torch.stack([
            model.scorer.score_pairs(
                model.user_poly_embeddings(rows["item_id_list"][i : i + 1], rows["item_length"][i : i + 1]),
                model.item_poly_embeddings(rows["item_id"][i : i + 1]))[0]
            for i in range(len(rows))])
    torch.testing.assert_close(fast, naive, rtol=1e-5, atol=1e-5)


def test_item_cache_is_reused_and_invalidated(prepared):
    model = make_model(prepared).eval()
    rows = valid_batch(prepared)
    calls = []
    original = model.item_poly_embeddings
    model.item_poly_embeddings = lambda ids: calls.append(len(ids)) or original(ids)
    with torch.no_grad():
        first = model.predict(rows)
        n_first = len(calls)
        assert torch.equal(model.predict(rows), first) and len(calls) == n_first  # cached
        with torch.no_grad():
            model.cpe.codes.add_(0.5)  # an in-place weight change, like an optimizer step
        changed = model.predict(rows)
    assert len(calls) > n_first and not torch.allclose(changed, first)
    model.train()
    assert model._item_cache.vectors is None
    model.eval()
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):  # as a trainer's bf16 evaluation fills the cache
            model.predict(rows)
        assert model._item_cache.vectors.dtype == torch.bfloat16
        assert torch.isfinite(model.predict(rows)).all() and torch.isfinite(model.full_sort_predict(rows)).all()


def test_full_sort_matches_predict(prepared):
    model = make_model(prepared).eval()
    rows = valid_batch(prepared)
    with torch.no_grad():
        grid = model.full_sort_predict(rows)
        pairs = model.predict(rows)
    torch.testing.assert_close(grid[torch.arange(len(rows)), rows["item_id"]], pairs, rtol=1e-5, atol=1e-5)


def test_generate_summary_returns_text_and_feeds_the_global_vector(prepared):
    model = make_model(prepared).eval()
    batch = train_batch(prepared)
    texts = model.generate_summary(batch["item_id_list"][:2], batch["item_length"][:2], max_new_tokens=5)
    assert len(texts) == 2 and all(isinstance(text, str) for text in texts)
    start_only = make_model(prepared, eval_global_vector="start").eval()
    start_only.load_state_dict(model.state_dict())
    args = (batch["item_id_list"], batch["item_length"])
    assert not torch.allclose(model.user_poly_embeddings(*args), start_only.user_poly_embeddings(*args))


def test_summary_generation_options_reach_generate(prepared):
    """``summary_generation`` (yaml) goes to Hugging Face generate: with no_repeat_ngram_size 1 no token repeats."""
    batch = train_batch(prepared)
    for options, repeats_allowed in (({"no_repeat_ngram_size": 1}, False), ({}, True)):
        model = make_model(prepared, summary_generation=options).eval()
        history = model.encode_history(batch["item_id_list"][:4], batch["item_length"][:4])
        sequences = model._generate(history, max_new_tokens=24, min_new_tokens=24)  # [4, <= 25]
        has_repeat = any(len(set(row.tolist())) < len(row) for row in sequences[:, 1:])
        assert has_repeat == repeats_allowed  # the untrained decoder repeats tokens unless told not to


def test_save_and_reload_round_trips_scores_exactly(prepared, tmp_path):
    model = make_model(prepared)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sum(model.calculate_loss(train_batch(prepared))).backward()
    optimizer.step()
    model.eval()
    rows = valid_batch(prepared)
    with torch.no_grad():
        scores = model.predict(rows)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "model.pth")
    fresh = make_model(prepared, seed=7)
    fresh.load_state_dict(torch.load(tmp_path / "model.pth")["state_dict"])
    with torch.no_grad():
        assert torch.equal(fresh.eval().predict(rows), scores)


def test_empty_history_row_gets_finite_scores(prepared):
    model = make_model(prepared).eval()
    rows = Interaction({"item_id_list": torch.zeros(2, 6, dtype=torch.long), "item_length": torch.zeros(2).long(),
                        "item_id": torch.tensor([1, 2]), "user_id": torch.tensor([1, 1])})
    with torch.no_grad():
        assert torch.isfinite(model.predict(rows)).all()


# -------------------------------------------------------------------------------------------------- backbone
def test_pretrained_path_loads_a_local_model_and_adds_sos(prepared, tmp_path):
    """``plm_init: pretrained`` with a local folder (as with a hub name): a tokenizer without [SOS] gains it and the
    embedding matrix grows to hold it; the saved weights are used."""
    text = Tokenizer(models.Unigram())
    text.pre_tokenizer = pre_tokenizers.Metaspace()
    text.train_from_iterator(["News Title: goal coach season stocks market bank"] * 20,
                             trainer=trainers.UnigramTrainer(vocab_size=60, special_tokens=["<pad>", "</s>", "<unk>"],
                                                             unk_token="<unk>"))
    plain = PreTrainedTokenizerFast(tokenizer_object=text, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    t5 = build_scratch_t5(plain, TINY["plm_config"])
    local = tmp_path / "tiny-t5"
    plain.save_pretrained(local)
    t5.save_pretrained(local)
    model = make_model(prepared, plm_init="pretrained", plm=str(local))
    sos = model.tokenizer.convert_tokens_to_ids("[SOS]")
    assert sos == len(plain) and model.t5.shared.weight.shape[0] == len(plain) + 1
    torch.testing.assert_close(model.t5.shared.weight[: len(plain)], t5.shared.weight)
    assert (model.item_tokens[:, 0] == sos).all()
    with pytest.raises(ValueError, match="plm_init must be one of"):
        make_model(prepared, plm_init="download")
    with pytest.raises(OSError, match=r"plm='.*no-such-t5' could not be loaded .* plm_init: scratch"):
        make_model(prepared, plm_init="pretrained", plm=str(tmp_path / "no-such-t5"))


def test_missing_item_text_names_the_file(prepared, tmp_path):
    shutil.copytree(prepared[0]["data_path"], tmp_path / "mind")
    text = tmp_path / "mind" / "mind.text.jsonl"
    dropped = prepared[1].field2id_token["item_id"][1]
    lines = [line for line in text.read_text(encoding="utf-8").splitlines() if f'"{dropped}"' not in line]
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = make_config(tmp_path)
    with pytest.raises(ValueError, match=r"mind\.text\.jsonl: no text for 1 of"):
        EmbSum(config, create_dataset(config))
