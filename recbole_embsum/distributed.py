"""Data-parallel training, evaluation and export through RecBole's own DDP path.

RecBole 1.2.1 runs several processes with ``recbole.quick_start.run(..., nproc, world_size, ip, port, group_offset)``
(``torch.multiprocessing.spawn``; each rank builds a ``Config`` with ``local_rank`` set, which joins the process
group). `install()` corrects five RecBole behaviours on that path, each named where it is patched:

1. ``Config._init_device`` hard-codes ``backend="nccl"``, ``torch.device("cuda", rank)`` and
   ``torch.cuda.set_device`` and asserts one ``gpu_id`` per process, so it cannot run without CUDA -> `init_device`
   picks gloo and the CPU when CUDA is absent (or ``use_gpu: False``), and bounds every collective by
   ``dist_timeout`` seconds (default `DEFAULT_TIMEOUT_S`) so a lost rank fails instead of hanging.
2. ``AbstractTrainer.__init__`` wraps the model as ``DistributedDataParallel(model, device_ids=[local_rank])``, which
   DDP rejects for a CPU model, with ``broadcast_buffers=True``, which with RecBole's per-step ``set_reduce_hook``
   re-broadcasts every buffer (EmbSum's tokenised item text) each micro-batch -> `wrap_ddp`.
3. ``Trainer.evaluate`` computes metrics on each rank's shard and averages them weighted by a sample count
   (``_map_reduce``), which is wrong for AUC and per-impression metrics, and its ``DistributedSampler`` pads the
   last shard with repeated rows -> every rank's rows are gathered (`gather_rows`), padded rows dropped, original
   order restored, and the metrics computed once on all rows (so per-impression grouping happens after the gather).
4. ``Trainer._map_reduce`` is then the identity: the result is already global on every rank.
5. ``Trainer.__init__`` names the checkpoint after the local time in seconds, so ranks can disagree on the file that
   rank 0 writes and every rank reloads for testing, and ``Trainer._save_checkpoint`` returns at once on other ranks,
   which may then read a half-written file -> all ranks use rank 0's name and wait for its write.

Logs: ``_init_device`` (ours, like RecBole's) sets ``state: error``, ``show_progress: False`` and ``verbose: False``
on every rank but global rank 0 (RecBole: on every machine's first process), so their log files hold errors only.
Checkpoints are written by rank 0 only.

Batch sizes: RecBole's loaders divide ``train_batch_size`` and ``eval_batch_size`` by ``world_size``
(``AbstractDataLoader.__init__``), so they stay global; with ``grad_accum_steps`` an optimizer step sees
``train_batch_size * grad_accum_steps`` rows over all ranks, as in one process.

Sharded export: `shard_range` gives each rank a contiguous block of ids and `gather_shards` reassembles the blocks in
id order on every rank (both are the identity without a process group)::

    ids = shard_range(n_items)                                  # this rank's block of 0..n_items-1
    local = encode(torch.arange(ids.start, ids.stop))           # [len(ids), ...]
    embeddings = gather_shards(local, n_items)                  # [n_items, ...], same on every rank
    if is_main_process(config): write(embeddings)
"""
import datetime
import functools
import os

import torch
import torch.distributed as dist
from recbole.config import Config
from recbole.trainer.trainer import AbstractTrainer, Trainer
from torch.nn.parallel import DistributedDataParallel

from recbole_embsum.evaluation.collector import PER_EVALUATION_KEYS

DEFAULT_TIMEOUT_S = 1800  # torch's own default for gloo/nccl collectives

_recbole_init_device = Config._init_device


# --- queries and small collectives (all no-ops in a single process) ---------------------------------------------------
def is_distributed(config=None):
    """True inside a RecBole DDP run (``single_spec`` is False) with the process group up."""
    if config is not None and config["single_spec"] in (None, True):
        return False
    return dist.is_available() and dist.is_initialized()


def is_main_process(config=None):
    """True on global rank 0, and in a single process."""
    return not is_distributed(config) or dist.get_rank() == 0


def barrier(config=None):
    """Wait for every rank (bounded by the process group's timeout)."""
    if is_distributed(config):
        dist.barrier()


def broadcast_object(obj, config=None):
    """Rank 0's ``obj`` on every rank (any picklable object)."""
    if not is_distributed(config):
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def broadcast_module(module, config=None):
    """Copy rank 0's parameters and buffers into ``module`` on every rank, in place (e.g. after only rank 0 read a
    checkpoint: on several machines the others may not see rank 0's files)."""
    if not is_distributed(config):
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        sent = tensor.data.to(_comm_device(tensor))
        dist.broadcast(sent, src=0)
        if sent.data_ptr() != tensor.data.data_ptr():
            tensor.data.copy_(sent)


def _comm_device(tensor):
    """NCCL moves CUDA tensors only; gloo moves CPU tensors."""
    if dist.get_backend() == dist.Backend.NCCL:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def mean_over_ranks(tensor, config=None):
    """Element-wise mean of ``tensor`` over ranks (a NaN on any rank reaches every rank)."""
    if not is_distributed(config):
        return tensor
    reduced = tensor.to(_comm_device(tensor)).clone()
    dist.all_reduce(reduced)
    return (reduced / dist.get_world_size()).to(tensor.device)


def _all_gather(tensor):
    """``[world_size]`` list of every rank's ``tensor`` (same shape on all ranks), on ``tensor``'s device."""
    is_bool = tensor.dtype == torch.bool  # not every backend reduces/gathers bool
    sent = tensor.to(_comm_device(tensor), torch.uint8 if is_bool else tensor.dtype).contiguous()
    parts = [torch.empty_like(sent) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, sent)
    return [p.to(tensor.device, torch.bool if is_bool else tensor.dtype) for p in parts]


# --- 1. process group and device -------------------------------------------------------------------------------------
def init_device(self):
    """Replacement for ``Config._init_device``: RecBole's, plus gloo on CPU and a bounded collective timeout.

    Without ``local_rank`` (one process) RecBole's own method runs unchanged. With it (a spawned rank) this joins
    the process group as global rank ``local_rank + offset`` of ``world_size`` at ``tcp://ip:port``.
    """
    cfg = self.final_config_dict
    if "local_rank" not in cfg:
        return _recbole_init_device(self)
    gpu_id = cfg["gpu_id"]
    gpu_id = ",".join(map(str, gpu_id)) if isinstance(gpu_id, (tuple, list)) else str(gpu_id)
    cfg["gpu_id"] = gpu_id
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu_id
    use_cuda = cfg.get("use_gpu", True) is not False and len(gpu_id) > 0 and torch.cuda.is_available()
    if use_cuda and len(gpu_id.split(",")) < cfg["nproc"]:
        raise ValueError(f"nproc={cfg['nproc']} processes need as many GPUs in gpu_id, got gpu_id='{gpu_id}'")
    local_rank = cfg["local_rank"]
    rank = local_rank + cfg.get("offset", 0)
    dist.init_process_group(
        backend="nccl" if use_cuda else "gloo",
        rank=rank,
        world_size=cfg["world_size"],
        init_method=f"tcp://{cfg['ip']}:{cfg['port']}",
        timeout=datetime.timedelta(seconds=float(cfg.get("dist_timeout") or DEFAULT_TIMEOUT_S)),
    )
    if use_cuda:
        torch.cuda.set_device(local_rank)
        cfg["device"] = torch.device("cuda", local_rank)
    else:
        cfg["device"] = torch.device("cpu")
    cfg["single_spec"] = False
    if rank != 0:  # only global rank 0 logs and shows progress (RecBole: the first process of every machine)
        cfg["state"] = "error"
        cfg["show_progress"] = False
        cfg["verbose"] = False


# --- 2. the DDP wrapper -----------------------------------------------------------------------------------------------
def wrap_ddp(model, config):
    """``DistributedDataParallel`` around ``model`` on ``config['device']`` (CUDA or CPU).

    Buffers are synchronised once here (DDP broadcasts rank 0's parameters and buffers at construction), not at
    every forward: RecBole calls the DDP forward once per micro-batch (``set_reduce_hook``).
    """
    device = config["device"]
    device_ids = None  # CPU modules: DDP requires None
    if device.type == "cuda":
        device_ids = [device.index if device.index is not None else torch.cuda.current_device()]
    return DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)


def _abstract_trainer_init(self, config, model):
    """Replacement for ``AbstractTrainer.__init__`` (RecBole's, with `wrap_ddp`; SyncBatchNorm needs CUDA)."""
    self.config = config
    self.model = model
    if not config["single_spec"]:
        if config["device"].type == "cuda":
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.distributed_model = wrap_ddp(self.model, config)


# --- 3./4. evaluation over all ranks -------------------------------------------------------------------------------
def gather_rows(local, num_rows):
    """All ranks' evaluation rows in dataset order, without the rows ``DistributedSampler`` padded in.

    RecBole's eval loaders use ``DistributedSampler(range(num_rows), shuffle=False, drop_last=False)``: the index
    list is padded to ``ceil(num_rows / W) * W`` by repeating its head, and rank r takes indices r, r+W, r+2W, ...
    So rank r's j-th row is dataset row ``j * W + r``; interleaving the ranks' rows and keeping the first
    ``num_rows`` restores the single-process order exactly.

    ``local``: [ceil(num_rows / W), ...] this rank's rows in evaluation order -> [num_rows, ...] on every rank.
    """
    world = dist.get_world_size()
    per_rank = -(-num_rows // world)
    counts = torch.stack(_all_gather(torch.tensor([local.shape[0]])))  # [W, 1]
    if (counts != per_rank).any():
        raise RuntimeError(
            f"DDP evaluation expects one collected row per evaluated sample ({per_rank} on each of {world} ranks for "
            f"{num_rows} samples) but ranks collected {counts.flatten().tolist()}; use eval_args mode 'labeled' or "
            "'full' (sampled uniN/popN evaluation groups several rows per sample)"
        )
    # Each rank's rows go straight to their dataset positions, one rank at a time, so all rows are held once (plus one
    # rank's share), not once as W gathered parts and again interleaved.
    gathered = local.new_empty((per_rank * world, *local.shape[1:]))
    positions = gathered.view(per_rank, world, *local.shape[1:])  # [per_rank, W, ...]: [j, r] is row j*W + r
    is_bool = local.dtype == torch.bool  # not every backend moves bool
    for source in range(world):
        part = local if source == dist.get_rank() else torch.empty_like(local)
        sent = part.to(_comm_device(part), torch.uint8 if is_bool else part.dtype).contiguous()
        dist.broadcast(sent, src=source)
        positions[:, source] = sent.to(local.device, local.dtype)
        del part, sent
    return gathered[:num_rows]


def _gathering_evaluate(evaluate):
    """Wrap ``Trainer.evaluate`` so that under DDP the collector hands over every rank's rows."""
    if getattr(evaluate, "_embsum_gathering", False):
        return evaluate

    @functools.wraps(evaluate)
    def wrapper(self, eval_data, *args, **kwargs):
        if self.config["single_spec"] or not eval_data:
            return evaluate(self, eval_data, *args, **kwargs)
        collector = self.eval_collector
        local_struct = collector.get_data_struct

        def gathered_struct():
            struct = local_struct()
            for key in PER_EVALUATION_KEYS:  # every rank holds the same keys: same config, same metrics
                if key in struct:
                    struct[key] = gather_rows(struct[key], eval_data.sample_size)
            return struct

        collector.get_data_struct = gathered_struct
        try:
            return evaluate(self, eval_data, *args, **kwargs)
        finally:
            del collector.get_data_struct

    wrapper._embsum_gathering = True
    return wrapper


def _result_is_global(self, result, num_sample):
    """Replacement for ``Trainer._map_reduce``: metrics were computed on all ranks' rows already."""
    return result


# --- 5. one checkpoint file, complete before anyone reads it ----------------------------------------------------------
def _sharing_checkpoint_file(init):
    """Wrap ``Trainer.__init__``: every rank adopts rank 0's ``saved_model_file``."""
    if getattr(init, "_embsum_shared_file", False):
        return init

    @functools.wraps(init)
    def wrapper(self, config, model):
        init(self, config, model)
        self.saved_model_file = broadcast_object(self.saved_model_file, config)

    wrapper._embsum_shared_file = True
    return wrapper


def _waiting_for_checkpoint(save_checkpoint):
    """Wrap ``Trainer._save_checkpoint``: other ranks continue once rank 0 has written the file."""
    if getattr(save_checkpoint, "_embsum_waiting", False):
        return save_checkpoint

    @functools.wraps(save_checkpoint)
    def wrapper(self, *args, **kwargs):
        save_checkpoint(self, *args, **kwargs)
        barrier(self.config)

    wrapper._embsum_waiting = True
    return wrapper


# --- sharded export -----------------------------------------------------------------------------------------------
def _rank_and_world(rank, world_size):
    initialized = dist.is_available() and dist.is_initialized()
    if world_size is None:
        world_size = dist.get_world_size() if initialized else 1
    if rank is None:
        rank = dist.get_rank() if initialized else 0
    return rank, world_size


def shard_range(num_items, rank=None, world_size=None):
    """This rank's contiguous block of ``range(num_items)``; blocks differ in size by at most one, earlier ranks
    larger. ``rank``/``world_size`` default to the process group's (0 and 1 without one)."""
    rank, world_size = _rank_and_world(rank, world_size)
    base, extra = divmod(num_items, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def gather_shards(local, num_items):
    """Concatenate every rank's `shard_range` block in rank (= id) order: [len(block), ...] -> [num_items, ...].

    Runs on all ranks (a collective); without a process group it returns ``local``.
    """
    rank, world_size = _rank_and_world(None, None)
    block = shard_range(num_items, rank, world_size)
    if local.shape[0] != len(block):
        raise ValueError(f"rank {rank} holds {local.shape[0]} rows but its shard of {num_items} ids has {len(block)}")
    if world_size == 1:
        return local
    longest = len(shard_range(num_items, 0, world_size))
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[: local.shape[0]] = local
    parts = _all_gather(padded)
    return torch.cat([part[: len(shard_range(num_items, r, world_size))] for r, part in enumerate(parts)])


# --- installation ----------------------------------------------------------------------------------------------------
def install():
    """Apply the RecBole overrides listed in the module docstring (idempotent; the single-process path is unchanged)."""
    Config._init_device = init_device
    AbstractTrainer.__init__ = _abstract_trainer_init
    Trainer.evaluate = _gathering_evaluate(Trainer.evaluate)
    Trainer._map_reduce = _result_is_global
    Trainer.__init__ = _sharing_checkpoint_file(Trainer.__init__)
    Trainer._save_checkpoint = _waiting_for_checkpoint(Trainer._save_checkpoint)
