"""`recbole-embsum evaluate-summaries` (paper Table 3) and the evaluation users' reference summaries
(`summarize --split test`), on the synthetic MIND fixture with a tiny EmbSum trained for one epoch."""
import json
import shutil

import pytest

from conftest import TINY_EMBSUM

from recbole_embsum.cli import main
from recbole_embsum.evaluation.rouge import rouge_report
from recbole_embsum.summaries.history import evaluation_histories, training_engagements
from recbole_embsum.summaries.store import load_records, load_summaries

# The shared tiny EmbSum with short histories and item texts.
TINY = {
    **TINY_EMBSUM, "summary_max_tokens": 24, "train_batch_size": 32, "eval_batch_size": 512,
    "MAX_ITEM_LIST_LENGTH": 10, "title_max_tokens": 12, "abstract_max_tokens": 12,
}
HEADER = "impression_id:token\tuser_id:token\titem_id:token\tlabel:float\ttimestamp:float\titem_id_list:token_seq\t" \
         "neg_items:token_seq\n"


def test_evaluation_histories_are_the_latest_test_history_of_users_not_in_training(tmp_path):
    path = tmp_path / "d.test.inter"
    path.write_text(HEADER + "".join([
        "1\tU1\tN9\t1\t100\tN1 N2\t\n",        # U1 trained: left out
        "2\tU2\tN9\t0\t200\tN3 N4 N3\t\n",     # U2's latest row (t=200) ...
        "2\tU2\tN8\t1\t200\tN3 N4 N3\t\n",     # ... the later row of the tie wins; duplicates drop, order kept
        "3\tU2\tN7\t1\t150\tN3\t\n",           # earlier row: not used, nor are the clicked candidates
        "4\tU3\tN9\t1\t300\t\t\n",             # no history: kept as []
    ]), encoding="utf-8")
    assert evaluation_histories(path, {"U1"}) == {"U2": ["N3", "N4"], "U3": []}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mind_dataset):
    """A copy of the converted fixture with heuristic train/test summaries and a one-epoch tiny EmbSum checkpoint."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_trainer, init_seed

    from recbole_embsum import EmbSum

    source, name = mind_dataset
    root = tmp_path_factory.mktemp("evalsum")
    data_path = root / "data"
    shutil.copytree(source, data_path)
    for split in ("train", "test"):
        assert main(["summarize", "--dataset", name, "--data-path", str(data_path), "--split", split]) == 0
    config = {**TINY, "data_path": str(data_path), "epochs": 1, "checkpoint_dir": str(root / "saved"),
              "show_progress": False}
    config = Config(model="EmbSum", dataset=name, config_dict=config)
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    model = EmbSum(config, train_data._dataset)
    get_trainer(config["MODEL_TYPE"], "EmbSum")(config, model).fit(train_data, None, saved=True, show_progress=False)
    (checkpoint,) = (root / "saved").glob("EmbSum-*.pth")
    return root, data_path / name, name, checkpoint


def test_summarize_split_test_writes_references_for_users_outside_training_only(trained):
    _, folder, name, _ = trained
    train_users = set(training_engagements(folder / f"{name}.train.inter"))  # with or without a summary
    test_users = {r["user_id"] for r in load_records(folder / f"{name}.test.summaries.jsonl")}
    expected = {user for user, items in evaluation_histories(folder / f"{name}.test.inter", train_users).items()
                if items}
    assert test_users and test_users == expected  # synth: the last 10% of users appear only in dev
    assert not test_users & train_users


def test_evaluate_summaries_writes_generated_summaries_and_their_rouge(trained, capsys):
    root, folder, name, checkpoint = trained
    references = folder / f"{name}.test.summaries.jsonl"
    out = root / "eval"
    argv = ["evaluate-summaries", "--checkpoint", str(checkpoint), "--references", str(references),
            "--output", str(out), "--max-users", "5"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| ROUGE-1 |" in printed and "| ROUGE-L |" in printed

    records = load_records(out / "summaries.jsonl")
    assert len(records) == 5
    assert {r["backend"] for r in records} == {"embsum"} and {r["model"] for r in records} == {checkpoint.name}
    wanted = load_summaries(references)
    assert [r["user_id"] for r in records] == list(wanted)[:5]  # reference file order = test file order
    # rouge.json is the ROUGE of exactly the written summaries against their references
    report = rouge_report([r["summary"] for r in records], [wanted[r["user_id"]] for r in records])
    saved = json.loads((out / "rouge.json").read_text(encoding="utf-8"))
    assert saved["users"] == 5
    for metric, score in report.items():
        assert saved[metric]["fmeasure"] == pytest.approx(score.fmeasure)
        assert f"{100 * score.fmeasure:.2f}" in printed

    before = (out / "rouge.json").read_bytes()
    assert main(argv) == 2  # results already there: refused, untouched
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "rouge.json").read_bytes() == before


def test_evaluate_summaries_without_references_for_evaluation_users_says_so(trained, capsys):
    root, folder, name, checkpoint = trained
    training_only = folder / f"{name}.summaries.jsonl"  # references of training users only: nobody to score
    assert main(["evaluate-summaries", "--checkpoint", str(checkpoint), "--references", str(training_only),
                 "--output", str(root / "none")]) == 2
    err = capsys.readouterr().err
    assert "no test user outside the training split" in err and str(training_only) in err
    assert main(["evaluate-summaries", "--checkpoint", str(checkpoint), "--references", str(root / "missing.jsonl"),
                 "--output", str(root / "none")]) == 2
    assert "summarize --split test" in capsys.readouterr().err


def test_full_disk_while_writing_results_is_one_line_and_leaves_neither_file(trained, capsys, monkeypatch):
    import errno

    from recbole_embsum.evaluation import summaries

    root, folder, name, checkpoint = trained
    out = root / "full"

    def no_space(path, value):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a failed write reports it: no file name

    monkeypatch.setattr(summaries, "write_json", no_space)
    assert main(["evaluate-summaries", "--checkpoint", str(checkpoint), "--references",
                 str(folder / f"{name}.test.summaries.jsonl"), "--output", str(out), "--max-users", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"recbole-embsum evaluate-summaries: error: {out / 'rouge.json'}: No space left on device; the "
                   f"disk is full; free some space or choose another --output, then rerun")
    assert sorted(p.name for p in out.iterdir()) == []
