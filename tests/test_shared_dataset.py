"""DDP ranks on one machine share one loaded dataset (shared_dataset.py, compat section 11): the first rank builds it,
every rank maps the same files, and each rank's dataset equals a single-process load tensor for tensor; a failing
first rank leaves every rank with the same error instead of a hang."""
import os
import pickle
import socket
import tempfile

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from conftest import MIND_YAML

MARKER = "recbole-embsum-dataset-"


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _load(data_path, model, ddp=None):
    """(built split datasets' columns as numpy, the first valid rows as numpy, the Config) in this process."""
    import recbole_embsum  # noqa: F401
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation

    config = Config(model=model, dataset="mind", config_file_list=[MIND_YAML],
                    config_dict={"data_path": data_path, "show_progress": False, "state": "ERROR", "seed": 0,
                                 "dist_timeout": 60, **(ddp or {})})
    dataset = create_dataset(config)
    loaders = data_preparation(config, dataset)
    columns = [{field: values.numpy().copy() for field, values in loader._dataset.inter_feat.interaction.items()}
               for loader in loaders]
    batch = loaders[1]._dataset[np.arange(5)]  # the first valid rows, joined (item_id_list, item features)
    return columns, {field: values.numpy().copy() for field, values in batch.interaction.items()}, config


def _failing_build(config):
    raise ValueError(f"cannot load {config['dataset']}")


def _rank(rank, port, data_path, model, queue):
    ddp = {"nproc": 2, "world_size": 2, "local_rank": rank, "offset": 0, "ip": "127.0.0.1", "port": port}
    from recbole_embsum import shared_dataset

    columns, batch, config = _load(data_path, model, ddp)
    try:  # the first rank's loading fails: every rank loads for itself and meets the same error, none waits forever
        shared_dataset.create_dataset(config, _failing_build)
        failure = None
    except ValueError as error:
        failure = str(error)
    mapped = set()
    with open("/proc/self/maps", encoding="utf-8") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) >= 6 and MARKER in parts[5]:
                mapped.add((parts[3], parts[4], parts[5]))  # device, inode, path (" (deleted)" follows)
    queue.put((rank, columns, batch, sorted(mapped), failure))


@pytest.mark.slow  # two spawned processes importing RecBole: ~20 s on an idle machine
@pytest.mark.timeout(300)
def test_two_ranks_map_the_same_files_and_load_what_one_process_loads(mind_dataset_no_empty, tmp_path, monkeypatch):
    data_path, _ = mind_dataset_no_empty
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the builder's private folder goes here; spawned ranks inherit it
    tempfile.tempdir = None
    queue = mp.get_context("spawn").SimpleQueue()
    ranks = mp.spawn(_rank, args=(_free_port(), data_path, "SASRec", queue), nprocs=2, join=False)
    results = {rank: rest for rank, *rest in (queue.get(), queue.get())}  # read before joining: the pipe is small
    while not ranks.join():
        pass
    tempfile.tempdir = None

    maps = [results[rank][2] for rank in (0, 1)]
    assert maps[0] and maps[0] == maps[1]  # the same files (device, inode) in both ranks
    assert all(path.startswith(str(tmp_path)) for _, _, path in maps[0])
    assert not [name for name in os.listdir(tmp_path) if name.startswith(MARKER)]  # removed once mapped

    assert results[0][3] == results[1][3] == "cannot load mind"
    columns, batch, _ = _load(data_path, "SASRec")  # one process: no process group, nothing shared
    for rank in (0, 1):
        rank_columns, rank_batch = results[rank][0], results[rank][1]
        for split, split_columns in zip(rank_columns, columns):
            assert split_columns.keys() == split.keys()
            for field, values in split_columns.items():
                assert split[field].dtype == values.dtype and np.array_equal(split[field], values), field
        assert rank_batch.keys() == batch.keys()
        for field, values in batch.items():
            assert np.array_equal(rank_batch[field], values), field
