"""Data parallel on CPU with gloo: row gathering and sharding helpers on 2 processes, and a 2-process RecBole run
(mp.spawn -> run_recbole with local_rank, as recbole.quick_start.run does) whose metrics must equal a
single-process evaluation of the checkpoint it wrote."""
import glob
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from recbole_embsum import distributed

from conftest import MIND_YAML

METRICS = ["AUC", "imp_auc", "imp_mrr", "imp_ndcg@5", "imp_ndcg@10"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


# --- helpers on 2 ranks ----------------------------------------------------------------------------------------------
def test_shard_range_splits_ids_into_contiguous_blocks():
    blocks = [distributed.shard_range(10, rank, 3) for rank in range(3)]
    assert blocks == [range(0, 4), range(4, 7), range(7, 10)]
    assert [distributed.shard_range(2, rank, 3) for rank in range(3)] == [range(0, 1), range(1, 2), range(2, 2)]
    assert distributed.shard_range(5) == range(5)  # no process group: everything


def _helpers_rank(rank, port, num_rows):
    dist.init_process_group("gloo", rank=rank, world_size=2, init_method=f"tcp://127.0.0.1:{port}")
    try:
        # what rank r evaluates under RecBole's DistributedSampler(shuffle=False): rows r, r+3, ... of the padded list
        sampler = torch.utils.data.distributed.DistributedSampler(list(range(num_rows)), shuffle=False)
        rows = torch.tensor(list(sampler))  # [ceil(5 / 2)] = [3]; rank 1 ends with a padded copy of row 0
        local = torch.stack([rows * 10, rows], dim=1)  # [3, 2], a row-wise payload
        gathered = distributed.gather_rows(local, num_rows)
        expected = torch.stack([torch.arange(num_rows) * 10, torch.arange(num_rows)], dim=1)
        assert torch.equal(gathered, expected), gathered
        assert torch.equal(distributed.gather_rows(rows >= 3, num_rows), torch.arange(num_rows) >= 3)  # bool rows

        block = distributed.shard_range(num_rows)
        embeddings = torch.arange(block.start, block.stop, dtype=torch.float32)[:, None].repeat(1, 4)  # [len, 4]
        merged = distributed.gather_shards(embeddings, num_rows)
        assert torch.equal(merged, torch.arange(num_rows, dtype=torch.float32)[:, None].repeat(1, 4)), merged

        module = torch.nn.BatchNorm1d(3)  # a parameter and buffers, different on each rank
        with torch.no_grad():
            module.weight.fill_(rank + 1.0)
            module.running_mean.fill_(rank + 5.0)
        distributed.broadcast_module(module, {"single_spec": False})
        assert module.weight.tolist() == [1.0] * 3 and module.running_mean.tolist() == [5.0] * 3
        assert distributed.broadcast_object({"rank": rank}, {"single_spec": False}) == {"rank": 0}
        # the trainer's loss check sees a NaN of any rank on every rank, so all ranks stop together (no hang)
        losses = torch.tensor([2.0 * rank, float("nan") if rank == 1 else 1.0])
        mean = distributed.mean_over_ranks(losses, {"single_spec": False})
        assert mean[0].item() == 1.0 and mean[1].isnan()

        with pytest.raises(RuntimeError, match="one collected row per evaluated sample"):
            distributed.gather_rows(local[: 3 - rank], num_rows)  # rank 1 collected a row too few
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_gather_rows_restores_dataset_order_without_padding_and_shards_merge_in_id_order():
    mp.spawn(_helpers_rank, args=(free_port(), 5), nprocs=2, join=True)


# --- a RecBole run on 2 ranks ----------------------------------------------------------------------------------------
def _run_config(data_path, checkpoint_dir, model_options):
    return {
        "data_path": data_path,
        "checkpoint_dir": checkpoint_dir,
        "metrics": METRICS,
        "valid_metric": "imp_auc",
        "metric_decimal_place": 10,  # compare metrics to 10 places, not RecBole's 4
        "epochs": 1,
        "eval_batch_size": 100,  # several batches per rank
        "seed": 0,
        "reproducibility": True,
        "show_progress": False,
        "dist_timeout": 60,
        **model_options,
    }


def _train_rank(rank, model, config_dict, queue):
    """One spawned rank: what recbole.quick_start.run does per process (run_recbole with local_rank set)."""
    import recbole_embsum  # noqa: F401  registers EmbSum, metrics and collector in this process
    from recbole.quick_start import run_recbole

    distributed.install()
    run_recbole(model=model, dataset="mind", config_file_list=[MIND_YAML],
                config_dict=dict(config_dict, local_rank=rank), queue=queue)


def single_process_evaluation(model, config_dict, checkpoint):
    """The checkpoint evaluated on valid and test in this process (no process group)."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    config = Config(model=model, dataset="mind", config_file_list=[MIND_YAML], config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    net = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    return (trainer.evaluate(valid_data, model_file=checkpoint), trainer.evaluate(test_data, model_file=checkpoint),
            len(valid_data._dataset))


def assert_same_metrics(ddp, single, pooled_tolerance):
    """Per-impression metrics exactly equal; pooled AUC within ``pooled_tolerance``: a model whose scores depend on
    batch composition in the last float bits (EmbSum pads each batch to its longest text) may flip a near-tie pair
    among the ~10^5 pairs pooled AUC ranks."""
    assert set(ddp) == set(single) == {m.lower() for m in METRICS}
    for name, value in single.items():
        if name.startswith("imp_"):
            assert ddp[name] == value, name
        else:
            assert ddp[name] == pytest.approx(value, abs=pooled_tolerance), name


def run_two_ranks_and_compare(model, data_path, tmp_path, monkeypatch, model_options, pooled_tolerance=0.0):
    import recbole_embsum  # noqa: F401

    monkeypatch.chdir(tmp_path)  # RecBole writes log/ and log_tensorboard/ in the working directory
    checkpoint_dir = str(tmp_path / "saved")
    config_dict = _run_config(data_path, checkpoint_dir, model_options)
    queue = mp.get_context("spawn").SimpleQueue()
    ddp = dict(config_dict, world_size=2, nproc=2, ip="127.0.0.1", port=free_port(), offset=0)
    mp.spawn(_train_rank, args=(model, ddp, queue), nprocs=2, join=True)
    result = queue.get()

    (checkpoint,) = glob.glob(os.path.join(checkpoint_dir, "*.pth"))  # one file, written by rank 0
    logs = [path for path in glob.glob("log/*/*.log") if os.path.getsize(path) > 0]
    assert len(logs) == 1, logs  # rank 1 logs errors only
    valid, test, valid_rows = single_process_evaluation(model, config_dict, checkpoint)
    assert_same_metrics(result["best_valid_result"], valid, pooled_tolerance)
    assert_same_metrics(result["test_result"], test, pooled_tolerance)
    return result, valid_rows


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_gloo_ranks_train_a_baseline_and_match_single_process_metrics(mind_dataset_no_empty, tmp_path,
                                                                          monkeypatch):
    data_path, _ = mind_dataset_no_empty
    options = {"embedding_size": 8, "hidden_size": 8, "train_batch_size": 64, "MAX_ITEM_LIST_LENGTH": 60}
    result, _ = run_two_ranks_and_compare("GRU4Rec", data_path, tmp_path, monkeypatch, options)
    assert 0.0 < result["test_result"]["imp_auc"] < 1.0


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_two_gloo_ranks_train_embsum_with_accumulation_and_match_single_process_metrics(mind_dataset, tmp_path,
                                                                                       monkeypatch):
    from test_model_embsum import TINY, copy_with_summaries

    data_root = tmp_path / "data"
    copy_with_summaries(mind_dataset[0], data_root)  # the tokenizer cache is written beside the data
    options = dict(TINY, grad_accum_steps=2, lr_scheduler="linear", warmup_ratio=0.1, learner="adamw",
                   metrics=METRICS, valid_metric="imp_auc", show_progress=False, state="INFO")
    result, valid_rows = run_two_ranks_and_compare("EmbSum", str(data_root), tmp_path, monkeypatch, options,
                                                   pooled_tolerance=1e-4)
    assert valid_rows % 2 == 1  # rank 1 evaluated a padded copy of valid row 0: it must not be counted
    assert 0.0 < result["test_result"]["imp_auc"] < 1.0
