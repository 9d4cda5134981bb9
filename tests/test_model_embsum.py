"""EmbSum inside RecBole on a tiny converted-MIND-like dataset: shapes, gradients, learning, ablations, caches,
save/reload and the offline/pretrained backbone paths. Tiny T5 (d_model 32, 1 layer, ~300-token vocabulary)."""
import json
import os
import random

import pytest
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction

from recbole_embsum.model import EmbSum
from recbole_embsum.model.backbone import TOKENIZER_META, tokenizer_cache_dir
from recbole_embsum.model.losses import IGNORE_INDEX

MODEL_YAML = os.path.join(os.path.dirname(__file__), "..", "properties", "model", "EmbSum.yaml")
TOPICS = {
    "sports": ["goal", "coach", "season", "league", "stadium", "champion"],
    "finance": ["stocks", "market", "bank", "bonds", "economy", "shares"],
    "travel": ["flight", "hotel", "beach", "cruise", "island", "café"],
}
N_ITEMS_PER_TOPIC = 8
INTER_HEADER = ["impression_id:token", "user_id:token", "item_id:token", "label:float", "timestamp:float",
                "item_id_list:token_seq", "neg_items:token_seq"]
TINY = {
    "plm_init": "scratch",
    "plm_config": {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2, "d_kv": 16},
    "tokenizer_vocab_size": 300,
    "upe_codes": 4,
    "cpe_codes": 2,
    "session_size": 2,
    "session_max_tokens": 256,
    "summary_max_tokens": 48,
    "MAX_ITEM_LIST_LENGTH": 6,
    "train_batch_size": 8,
    "eval_batch_size": 64,
    "item_encode_batch_size": 8,
}


def _item_text(index):
    topic = list(TOPICS)[index // N_ITEMS_PER_TOPIC]
    rng = random.Random(index)
    words = TOPICS[topic]
    return {"item_id": f"N{index}", "title": " ".join(rng.choices(words, k=4)),
            "abstract": " ".join(rng.choices(words, k=12)), "category": topic, "subcategory": topic + "-sub"}


def write_tiny_mind(folder, name="mind", users=8, summaries_for=6, seed=0):
    """Converted-MIND-like benchmark files (design.md): each user likes one topic; clicks come from it."""
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    n_items = N_ITEMS_PER_TOPIC * len(TOPICS)
    with open(os.path.join(folder, f"{name}.text.jsonl"), "w", encoding="utf-8") as handle:
        for index in range(n_items):
            handle.write(json.dumps(_item_text(index), ensure_ascii=False) + "\n")
    with open(os.path.join(folder, f"{name}.item"), "w", encoding="utf-8") as handle:
        handle.write("item_id:token\tcategory:token\n")
        for index in range(n_items):
            handle.write(f"N{index}\t{_item_text(index)['category']}\n")
    splits = {"train": [], "valid": [], "test": []}
    summaries = []
    impression = 0
    for user in range(users):
        topic = user % len(TOPICS)
        liked = [f"N{topic * N_ITEMS_PER_TOPIC + j}" for j in range(N_ITEMS_PER_TOPIC)]
        others = [f"N{i}" for i in range(n_items) if f"N{i}" not in liked]
        history = rng.sample(liked, rng.randint(2, 5)) if user else []  # user 0 has no history
        if user < summaries_for:
            summaries.append({"user_id": f"U{user}", "summary": f"The user reads about {list(TOPICS)[topic]}.",
                              "backend": "test", "model": "test", "prompt_hash": "0"})
        for split, rounds in (("train", 3), ("valid", 1), ("test", 1)):
            for _ in range(rounds):
                impression += 1
                click, negatives = rng.choice(liked), rng.sample(others, rng.randint(1, 4))
                if split == "train":
                    splits[split].append([f"I{impression}", f"U{user}", click, "1", str(impression),
                                          " ".join(history), " ".join(negatives)])
                else:
                    for item, label in [(click, "1")] + [(n, "0") for n in negatives]:
                        splits[split].append([f"I{impression}", f"U{user}", item, label, str(impression),
                                              " ".join(history), ""])
    for split, rows in splits.items():
        with open(os.path.join(folder, f"{name}.{split}.inter"), "w", encoding="utf-8") as handle:
            handle.write("\t".join(INTER_HEADER) + "\n")
            handle.writelines("\t".join(row) + "\n" for row in rows)
    with open(os.path.join(folder, f"{name}.summaries.jsonl"), "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record) + "\n" for record in summaries)


def dataset_settings(data_root):
    """The dataset yaml's settings (design.md) for the tiny files."""
    return {
        "data_path": str(data_root),
        "benchmark_filename": ["train", "valid", "test"],
        "alias_of_item_id": ["item_id_list", "neg_items"],
        "load_col": {"inter": ["impression_id", "user_id", "item_id", "label", "timestamp", "item_id_list",
                               "neg_items"]},
        "encoding": "utf-8",
        "eval_args": {"order": "TO", "mode": "labeled"},
        "train_neg_sample_args": None,
        "metrics": ["AUC"],
        "valid_metric": "AUC",
        "title_max_tokens": 6,
        "abstract_max_tokens": 10,
        "train_neg_num": 3,
        "item_template": "News Title: {title}; News Abstract: {abstract}; News Category: {category}",
        "seed": 0,
        "reproducibility": True,
        "show_progress": False,
        "state": "WARNING",
    }


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_tiny_mind(root / "mind")
    return root


def make_config(data_root, **overrides):
    return Config(model=EmbSum, dataset="mind", config_file_list=[MODEL_YAML],
                  config_dict={**dataset_settings(data_root), **TINY, "device": "cpu", **overrides})


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
    record = _item_text(int(raw[1:]))
    assert text.startswith("News Title: ") and f"News Category: {record['category']}" in text
    assert model.item_token_lengths.max() <= TINY["session_max_tokens"] // TINY["session_size"]


def test_tokenizer_cache_written_once_and_vocab_mismatch_is_reported(prepared, data_root):
    make_model(prepared)
    cache = tokenizer_cache_dir(prepared[0]["data_path"], "mind")
    meta = os.path.join(cache, TOKENIZER_META)
    stamp = os.stat(meta).st_mtime_ns
    make_model(prepared)
    assert os.stat(meta).st_mtime_ns == stamp  # reused, not retrained
    with pytest.raises(ValueError, match="tokenizer_vocab_size=300"):
        make_model(prepared, tokenizer_vocab_size=301)


def test_summaries_are_tokenized_for_users_that_have_one(prepared):
    model = make_model(prepared)
    tokens = prepared[1].field2id_token["user_id"]
    assert model.n_summaries == 6
    for uid, raw in enumerate(tokens):
        has = raw != "[PAD]" and int(raw[1:]) < 6
        assert bool(model.summary_lengths[uid] > 0) == has
    uid = list(tokens).index("U1")
    ids = model.summary_tokens[uid, : model.summary_lengths[uid]]
    assert ids[-1] == model.tokenizer.eos_token_id
    assert "finance" in model.tokenizer.decode(ids, skip_special_tokens=True)


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
    glob, logits, labels = model.decode_global(history, model.summary_tokens[users], model.summary_lengths[users])
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
    batches = list(prepared[2])

    def total():
        torch.manual_seed(1)  # the same negatives each time
        with torch.no_grad():
            return sum(float(sum(model.calculate_loss(b))) for b in batches)

    model.train()
    before = total()
    for _ in range(6):
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
    assert [float(x) for x in first] == [float(x) for x in again]


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
    glob, logits, labels = ablated.decode_global(history, zeros, torch.zeros(len(batch), dtype=torch.long))
    assert logits.shape[1] == 1 and (labels == IGNORE_INDEX).all()
    expected = ablated._user_poly(history, glob)
    torch.testing.assert_close(ablated.user_poly_embeddings(batch["item_id_list"], batch["item_length"]), expected)
    items = torch.tensor([2, 6])
    torch.testing.assert_close(ablated.item_poly_embeddings(items), base.item_poly_embeddings(items))


# -------------------------------------------------------------------------------------------------- evaluation
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
    assert model._item_cache is None


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
    scratch = make_model(prepared)
    plain = scratch.tokenizer.__class__.from_pretrained(tokenizer_cache_dir(prepared[0]["data_path"], "mind"))
    local = tmp_path / "tiny-t5"
    plain.save_pretrained(local)
    scratch.t5.save_pretrained(local)
    model = make_model(prepared, plm_init="pretrained", plm=str(local))
    assert model.tokenizer.convert_tokens_to_ids("[SOS]") == scratch.tokenizer.convert_tokens_to_ids("[SOS]")
    torch.testing.assert_close(model.t5.shared.weight, scratch.t5.shared.weight)


def test_missing_item_text_names_the_file(prepared, tmp_path):
    folder = tmp_path / "mind"
    write_tiny_mind(folder)
    text = folder / "mind.text.jsonl"
    lines = text.read_text(encoding="utf-8").splitlines()
    text.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    config = make_config(tmp_path)
    with pytest.raises(ValueError, match=r"mind\.text\.jsonl: no text for 1 of"):
        EmbSum(config, create_dataset(config))
