"""``run_recbole`` for EmbSum and every RecBole model: the Python API and the ``run_recbole`` console script.

Importing this package registers EmbSum with RecBole (see ``registry.py``), so RecBole's own
``recbole.quick_start.run_recbole`` works for EmbSum too. What this module adds:

* ``run(...)`` with ``nproc > 1`` spawns workers that import ``recbole_embsum`` first (RecBole's own spawn target
  lives in ``recbole.quick_start`` and would not know EmbSum in the child processes);
* the ``run_recbole`` console script, taking the flags of RecBole's ``run_recbole.py``
  (``--model --dataset --config_files --nproc --world_size --ip --port --group_offset``) and ``--resume=PATH``
  (continue a run from its checkpoint, see ``checkpoint.py``); any ``--key=value`` left over is read by RecBole's
  ``Config`` from the command line, as in RecBole. Config values that cannot work stop it with one line
  (``validation.py``), and so does a config key in the dashed spelling of the ``recbole-embsum`` commands
  (``--data-path=/x``), which RecBole would read as an unknown key and ignore.
"""
import argparse
import sys
from collections.abc import MutableMapping

import recbole.quick_start

import recbole_embsum  # noqa: F401  (registration must happen in spawned workers too)
from recbole_embsum import checkpoint, compat, preflight, presets, validation

run_recbole = recbole.quick_start.run_recbole
load_data_and_model = checkpoint.load_data_and_model  # RecBole's, reading our checkpoints without the full unpickler


def _run_rank(rank, model, dataset, config_file_list, kwargs):
    """Body of one spawned DDP worker (``torch.multiprocessing.spawn`` passes the rank first)."""
    if not isinstance(kwargs, MutableMapping):
        raise ValueError(f"worker keyword arguments must be a dict, got {type(kwargs)}")
    kwargs["config_dict"]["local_rank"] = rank
    run_recbole(model=model, dataset=dataset, config_file_list=config_file_list, **kwargs)


def run(
    model,
    dataset,
    config_file_list=None,
    config_dict=None,
    saved=True,
    nproc=1,
    world_size=-1,
    ip="localhost",
    port="5678",
    group_offset=0,
):
    """Train and test ``model`` on ``dataset``; ``nproc``/``world_size`` > 1 runs torch.distributed data parallel.

    Same signature and result as ``recbole.quick_start.run``. Before anything is loaded, ``preflight.check`` stops a
    run that cannot start (missing data, summaries or backbone) with a one-line ``PreflightError``.
    """
    preflight.check(model, dataset, config_file_list, config_dict)
    if nproc == 1 and world_size <= 0:
        return run_recbole(
            model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict, saved=saved
        )
    import torch.multiprocessing as mp

    world_size = nproc if world_size == -1 else world_size
    queue = mp.get_context("spawn").SimpleQueue()
    config_dict = dict(config_dict or {})
    config_dict.update({"world_size": world_size, "ip": ip, "port": port, "nproc": nproc, "offset": group_offset})
    kwargs = {"config_dict": config_dict, "queue": queue, "saved": saved}
    mp.spawn(_run_rank, args=(model, dataset, config_file_list, kwargs), nprocs=nproc, join=True)
    return None if queue.empty() else queue.get()


def build_parser():
    parser = argparse.ArgumentParser(
        prog="run_recbole",
        description="Train and test a RecBole model (EmbSum or any built-in one). Any further --key=value "
        "overrides a config value, as in RecBole (command line > config_dict > yaml files > packaged defaults).",
    )
    parser.add_argument("--model", "-m", type=str, default="BPR", help="model name, e.g. EmbSum, SASRec, BPR")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="dataset name, e.g. mind, goodreads")
    parser.add_argument("--config_files", type=str, default=None,
                        help="space-separated yaml files or preset names (cpu-small, paper; properties/presets/)")
    parser.add_argument("--nproc", type=int, default=1, help="processes on this machine (data parallel)")
    parser.add_argument("--ip", type=str, default="localhost", help="address of the rank-0 machine")
    parser.add_argument("--port", type=str, default="5678", help="port of the rank-0 machine")
    parser.add_argument("--world_size", type=int, default=-1, help="processes over all machines")
    parser.add_argument("--group_offset", type=int, default=0, help="global rank of this machine's first process")
    parser.add_argument("--resume", type=str, default=None, metavar="PATH",
                        help="continue the run that wrote this checkpoint (same options) exactly where it was saved")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args, _ = build_parser().parse_known_args(argv)
    config_file_list = args.config_files.strip().split() if args.config_files else None
    config_file_list = presets.resolve_config_files(config_file_list)  # "cpu-small" -> its packaged yaml
    try:
        validation.check_command_line_spelling(argv)  # --data-path=/x would be a key RecBole never reads
        compat.check_model_name(args.model)  # before any data is loaded
        validation.check_config_files(config_file_list)  # before any worker process starts
        validation.check_dataset_name(args.dataset)
        run(
            args.model,
            args.dataset,
            config_file_list=config_file_list,
            config_dict={"resume": args.resume} if args.resume else None,
            nproc=args.nproc,
            world_size=args.world_size,
            ip=args.ip,
            port=args.port,
            group_offset=args.group_offset,
        )
    except (validation.ConfigError, compat.UnknownModelError, checkpoint.CheckpointError,
            preflight.PreflightError) as err:
        print(f"run_recbole: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
