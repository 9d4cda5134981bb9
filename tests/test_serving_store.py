"""Export folder format, resumable writer, EmbeddingStore scoring / streaming top-k and the `recommend` CLI, on
hand-made and random tensors (no model)."""
import json
import math
import os

import pytest
import torch
import torch.nn.functional as F

from recbole_embsum.cli import main
from recbole_embsum.model.scorer import poly_score
from recbole_embsum.serving.layout import MANIFEST_FILE, PLAN_FILE, ExportFormatError, shard_name
from recbole_embsum.serving.recommend import recommend
from recbole_embsum.serving.store import EmbeddingStore, RunningTopK
from recbole_embsum.serving.writer import ExportWriter, make_plan

M, N, D = 3, 2, 4


def write_export(folder, items, users, w_s, shard_rows=3, dtype="float32", summaries=None, fail_after=None):
    """Write an export of random-but-given embeddings; ``fail_after`` shards simulates a killed run."""
    item_ids, item_poly = items
    user_ids, user_poly = users
    plan = make_plan({"test": True}, {"m": user_poly.shape[1], "n": item_poly.shape[1], "d": item_poly.shape[2]},
                     item_ids, user_ids, dtype, shard_rows, summaries is not None)
    writer = ExportWriter(folder, plan)
    written = 0
    for section, poly in (("items", item_poly), ("users", user_poly)):
        for index, start, stop in writer.pending(section):
            if fail_after is not None and written == fail_after:
                raise KeyboardInterrupt
            tensors = {"poly": poly[start:stop]}
            if section == "items":
                tensors["keys"] = F.gelu(poly[start:stop] @ w_s.T)  # gelu(B W^s) as nn.Linear applies it
            writer.write_shard(section, index, tensors, summaries[start:stop] if section == "users" and summaries
                               else None)
            written += 1
    writer.finish(w_s, summary_model="test")
    return writer


@pytest.fixture
def random_export(tmp_path):
    torch.manual_seed(0)
    items = ([f"N{i}" for i in range(10)], torch.randn(10, N, D))
    users = ([f"U{i}" for i in range(4)], torch.randn(4, M, D))
    w_s = torch.randn(D, D)
    summaries = [f"likes topic {i}" for i in range(4)]
    write_export(tmp_path / "export", items, users, w_s, summaries=summaries)
    return tmp_path / "export", items, users, w_s


def reference_scores(user_poly, item_poly, w_s):
    return poly_score(user_poly, item_poly, F.gelu(item_poly @ w_s.T))


def test_score_matches_hand_computed_eqs_3_4(tmp_path):
    # m = 2 user vectors, n = 1 item vector, d = 2, W^s = identity.
    a = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # A, [1, 2, 2]
    b = torch.tensor([[[3.0, 1.0]]])  # B, [1, 1, 2]
    write_export(tmp_path, (["N1"], b), (["U1"], a), torch.eye(2), shard_rows=1)
    k = [3.0, 2.0]  # Eq. (3): A B^T flattened
    g = [3.0 * 0.5 * (1 + math.erf(3 / math.sqrt(2))), 1.0 * 0.5 * (1 + math.erf(1 / math.sqrt(2)))]  # gelu(B)
    logits = [g[0], 2 * g[1]]  # A gelu(B W^s)^T
    w_p = torch.softmax(torch.tensor(logits), 0)  # Eq. (4)
    expected = float(w_p[0] * k[0] + w_p[1] * k[1])
    assert EmbeddingStore(tmp_path).score("U1", ["N1"]).item() == pytest.approx(expected, rel=1e-6)


def test_round_trip_scores_every_user_item_pair_across_shards(random_export):
    folder, (item_ids, item_poly), (user_ids, user_poly), w_s = random_export
    assert sorted(os.listdir(folder)) == sorted(
        [PLAN_FILE, MANIFEST_FILE, "scorer.safetensors", "summaries.jsonl"]
        + [shard_name("items", i) for i in range(4)] + [shard_name("users", i) for i in range(2)])
    store = EmbeddingStore(folder)
    assert store.n_items == 10
    candidates = ["N9", "N0", "N4", "N4"]  # across shards, out of order, repeated
    rows = [9, 0, 4, 4]
    for u, user in enumerate(user_ids):
        torch.testing.assert_close(store.score(user, candidates),
                                   reference_scores(user_poly[u], item_poly[rows], w_s))
        torch.testing.assert_close(store.score(user, candidates, chunk_size=3), store.score(user, candidates))
    assert store.summary("U2") == "likes topic 2"


@pytest.mark.parametrize("chunk_size", [1, 3, 4, 100])
def test_streaming_topk_equals_full_ranking(random_export, chunk_size):
    folder, (item_ids, item_poly), (_, user_poly), w_s = random_export
    store = EmbeddingStore(folder)
    full = reference_scores(user_poly[1], item_poly, w_s)
    best = torch.topk(full, 4)
    result = store.topk("U1", 4, chunk_size=chunk_size)
    assert [item for item, _ in result] == [item_ids[i] for i in best.indices.tolist()]
    torch.testing.assert_close(torch.tensor([s for _, s in result]), best.values)
    assert len(store.topk("U1", 50, chunk_size=chunk_size)) == 10  # k larger than the catalogue


def test_item_chunks_never_exceed_chunk_size(random_export):
    store = EmbeddingStore(random_export[0])
    chunks = list(store.folders[0].item_chunks(2))
    assert [start for start, _, _ in chunks] == [0, 2, 3, 5, 6, 8, 9]  # shards of 3 rows, chunks of 2
    assert all(poly.shape[0] <= 2 and keys.shape == poly.shape for _, poly, keys in chunks)


def test_running_topk_merges_chunks_and_skips_masked_rows():
    best = RunningTopK(2)
    best.update(torch.tensor([0.5, float("-inf"), 3.0]), 0)
    best.update(torch.tensor([2.0, 1.0]), 3)
    assert best.positions.tolist() == [2, 3]
    assert best.scores.tolist() == [3.0, 2.0]
    with pytest.raises(ValueError, match="k must be >= 1"):
        RunningTopK(0)


def test_half_precision_storage_scores_close_to_float32(tmp_path, random_export):
    _, items, users, w_s = random_export
    write_export(tmp_path / "half", items, users, w_s, dtype="float16")
    full = EmbeddingStore(random_export[0]).score("U0", items[0])
    half = EmbeddingStore(tmp_path / "half").score("U0", items[0])
    torch.testing.assert_close(half, full, rtol=1e-2, atol=1e-2)


def test_interrupted_export_is_not_opened_and_resumes_only_missing_shards(tmp_path, random_export):
    _, items, users, w_s = random_export
    folder = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        write_export(folder, items, users, w_s, fail_after=2)
    assert not (folder / MANIFEST_FILE).exists()
    assert not [name for name in os.listdir(folder) if name.endswith(".tmp")]  # no half-written files
    with pytest.raises(ExportFormatError, match="has not finished; rerun it to resume"):
        EmbeddingStore(folder)
    done = {name: os.stat(folder / name).st_mtime_ns for name in (shard_name("items", 0), shard_name("items", 1))}
    plan = json.loads((folder / PLAN_FILE).read_text())
    assert [index for index, _, _ in ExportWriter(folder, plan).pending("items")] == [2, 3]
    write_export(folder, items, users, w_s)
    assert {name: os.stat(folder / name).st_mtime_ns for name in done} == done  # finished shards were skipped
    torch.testing.assert_close(EmbeddingStore(folder).score("U3", items[0]),
                               EmbeddingStore(random_export[0]).score("U3", items[0]))


def test_other_export_in_folder_is_refused_unless_overwrite(tmp_path, random_export):
    _, items, users, w_s = random_export
    folder = tmp_path / "twice"
    write_export(folder, items, users, w_s)
    (folder / "notes.txt").write_text("mine")
    other = make_plan({"test": "other"}, {"m": M, "n": N, "d": D}, items[0], users[0], "float32", 3, False)
    with pytest.raises(FileExistsError, match="holds another export"):
        ExportWriter(folder, other)
    ExportWriter(folder, other, overwrite=True)
    assert sorted(os.listdir(folder)) == ["notes.txt", PLAN_FILE]  # only the export's own files were removed


def test_later_folder_adds_and_overrides_items_and_users(tmp_path, random_export):
    base, (item_ids, item_poly), (_, user_poly), w_s = random_export
    new_poly = torch.randn(2, N, D) * 5
    new_user = torch.randn(1, M, D)
    write_export(tmp_path / "cold", (["N3", "N99"], new_poly), (["U9"], new_user), w_s)
    store = EmbeddingStore(base, tmp_path / "cold")
    assert store.n_items == 11
    torch.testing.assert_close(store.score("U0", ["N3", "N99", "N1"]),
                               reference_scores(user_poly[0], torch.stack([new_poly[0], new_poly[1], item_poly[1]]),
                                                w_s))
    catalogue = torch.cat([item_poly[:3], new_poly[:1], item_poly[4:], new_poly[1:]])
    ids = item_ids[:3] + ["N3"] + item_ids[4:] + ["N99"]
    best = torch.topk(reference_scores(new_user[0], catalogue, w_s), 11)
    result = EmbeddingStore(base, tmp_path / "cold").topk("U9", 11, chunk_size=2)
    assert [item for item, _ in result] == [ids[i] for i in best.indices.tolist()]  # the old N3 is not ranked
    assert store.summary("U9") is None


def test_folders_of_different_models_and_unknown_ids_are_clear_errors(tmp_path, random_export):
    base, items, users, w_s = random_export
    write_export(tmp_path / "other", items, users, w_s + 1)
    with pytest.raises(ExportFormatError, match="come from different models"):
        EmbeddingStore(base, tmp_path / "other")
    store = EmbeddingStore(base)
    with pytest.raises(KeyError, match=r"unknown user\(s\) 'U77'.*export --users behaviors.tsv"):
        store.score("U77", ["N1"])
    with pytest.raises(KeyError, match=r"unknown item\(s\) 'N77'.*export --items news.tsv"):
        store.score("U1", ["N1", "N77"])
    with pytest.raises(ExportFormatError, match="manifest.json: missing"):
        EmbeddingStore(tmp_path / "nothing-here")


def test_recommend_ranks_candidates_stably(random_export):
    folder, (_, item_poly), (_, user_poly), w_s = random_export
    store = EmbeddingStore(folder)
    result = recommend(store, "U2", candidates=["N1", "N5", "N1"], k=2)
    scores = reference_scores(user_poly[2], item_poly[[1, 5]], w_s).tolist()
    expected = [("N1", scores[0]), ("N1", scores[0]), ("N5", scores[1])]
    expected.sort(key=lambda pair: -pair[1])
    assert [item for item, _ in result.ranked] == [item for item, _ in expected[:2]]
    assert result.summary == "likes topic 2"


def test_recommend_cli_prints_ranking_and_explanation(random_export, capsys):
    folder, (item_ids, item_poly), (_, user_poly), w_s = random_export
    assert main(["recommend", "--embeddings", str(folder), "--user", "U0", "--topk", "3", "--explain",
                 "--chunk-size", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "# interest summary of U0: likes topic 0"
    assert lines[1] == "rank\titem\tscore"
    best = torch.topk(reference_scores(user_poly[0], item_poly, w_s), 3)
    assert [line.split("\t")[1] for line in lines[2:]] == [item_ids[i] for i in best.indices.tolist()]
    assert float(lines[2].split("\t")[2]) == pytest.approx(best.values[0].item(), abs=1e-5)

    assert main(["recommend", "--embeddings", str(folder), "--user", "U0", "--candidates", "N2,N7"]) == 0
    assert [line.split("\t")[1] for line in capsys.readouterr().out.splitlines()[1:]] == sorted(
        ["N2", "N7"], key=lambda i: -reference_scores(user_poly[0], item_poly[[int(i[1:])]], w_s).item())

    assert main(["recommend", "--embeddings", str(folder), "--user", "nobody", "--topk", "3"]) == 1
    assert "unknown user(s) 'nobody'" in capsys.readouterr().err


def test_iter_scores_streams_the_users_by_items_grid(random_export):
    folder, (_, item_poly), (user_ids, user_poly), w_s = random_export
    chunks = list(EmbeddingStore(folder).iter_scores(user_ids, chunk_size=4))
    assert [position for position, _ in chunks] == [0, 3, 6, 9]  # shards of 3 rows bound the chunks
    grid = torch.cat([scores for _, scores in chunks], dim=1)  # [U, I]
    torch.testing.assert_close(grid, torch.stack([reference_scores(a, item_poly, w_s) for a in user_poly]))
