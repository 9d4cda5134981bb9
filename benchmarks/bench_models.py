"""Per-model cost of the paper's Table 1 models beside EmbSum's: train step time, peak memory and scoring throughput,
on the same batches, at the paper's sizes with randomly initialised backbones (the same FLOPs as the pretrained ones,
no download), on whatever device is present (CUDA when available, else the CPU).

Every model is built on the same converted synthetic MIND data (MIND's shape: ~22 history items per user, titles and
abstracts of MIND-like length) and gets the same first training batch (same seed and batch size, so the same clicks
and impression negatives) and the same first labeled validation batch:

* train: one optimizer step (forward, loss backward, Adam step): median seconds of ``--steps`` after one warm-up,
  and rows/s;
* score: ``predict`` on the validation batch in evaluation mode, rows/s: "cold" includes encoding every item once
  (the first batch of an evaluation pass), "warm" reuses what the model caches (every later batch); a model that
  must read history and candidate together (UNBERT) pays its full cost in both;
* peak memory: on CUDA the allocator's peak over building the model, the steps and the scoring; on the CPU the peak
  resident memory of the process that measured the model (each model runs in its own child process) minus its
  resident memory when it started, i.e. data loading, model, optimizer state and the steps.

Sizes: ``--sizes paper`` (default): every PLM backbone from scratch at the size the paper names (``PAPER_SIZES``:
t5-small for EmbSum, roberta-base for NAML-PLM / UNBERT / MINER, bart-base for UniTRec; bert-base if a model's
``plm`` names BERT) with the published vocabulary size (``PAPER_VOCAB``), the content baselines at their packaged
(reference) sizes, the latest 60 history items.
``--sizes small`` (``--quick``): ``QUICK_SIZES`` per backbone family and benchmarks/small_models.yaml. A model this
installed version does not register is one line, not a failure. Prints one row per model and its ratios to EmbSum.

    python benchmarks/bench_models.py [--quick] [--sizes paper|small] [--models EmbSum,UNBERT,...]
                                      [--users 200 --items 300] [--batch-size 32 --eval-batch-size 256]
                                      [--history 60] [--steps 5] [--device cpu|cuda]
"""
import argparse
import logging
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time

import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quick import parse_args  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_YAML = os.path.join(REPO_ROOT, "benchmarks", "small_models.yaml")
MODELS = ("EmbSum", "NAML", "NRMS", "Fastformer", "CAUM", "MINS", "NAMLPLM", "UNBERT", "MINER", "UniTRec")
# plm_config of a scratch backbone per transformers model_type: the published checkpoints' sizes (their config.json).
PAPER_SIZES = {
    "t5": {"d_model": 512, "d_ff": 2048, "num_layers": 6, "num_decoder_layers": 6, "num_heads": 8, "d_kv": 64},
    "roberta": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                "max_position_embeddings": 514},
    "bert": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
             "max_position_embeddings": 512},
    "bart": {"d_model": 768, "encoder_layers": 6, "decoder_layers": 6, "encoder_attention_heads": 12,
             "decoder_attention_heads": 12, "encoder_ffn_dim": 3072, "decoder_ffn_dim": 3072,
             "max_position_embeddings": 1024},
}
# Vocabulary of the published checkpoints: a scratch tokenizer trained on the synthetic text has fewer entries, so the
# embeddings (and the LM head of an encoder-decoder) are grown to these sizes: the same parameters and output-layer
# FLOPs as the pretrained model (``--sizes paper`` only).
PAPER_VOCAB = {"t5": 32128, "roberta": 50265, "bert": 30522, "bart": 50265}
QUICK_SIZES = {
    "t5": {"d_model": 32, "d_ff": 64, "num_layers": 2, "num_decoder_layers": 1, "num_heads": 4, "d_kv": 8},
    "roberta": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
                "max_position_embeddings": 514},
    "bert": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64},
    "bart": {"d_model": 32, "encoder_layers": 2, "decoder_layers": 1, "encoder_attention_heads": 4,
             "decoder_attention_heads": 4, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64},
}


def build_data(root, users, items):
    """Synthetic MIND converted to atomic files in ``root/data/mind``."""
    from dataset_converters.impressions import ConvertOptions
    from dataset_converters.mind import convert_mind
    from dataset_converters.synth import synth_mind

    raw, data = os.path.join(root, "raw"), os.path.join(root, "data")
    synth_mind(raw, users=users, items=items, seed=0)
    convert_mind(raw, data, ConvertOptions(name="mind"))
    return data


def _synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(function):
    _synchronize()
    start = time.perf_counter()
    function()
    _synchronize()
    return time.perf_counter() - start


def _rss_bytes():
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def model_config(model_name, data_path, overrides, sizes):
    """``(Config, backbone family or None)`` of ``model_name`` with a scratch backbone of ``sizes`` (PAPER_SIZES or
    QUICK_SIZES) when the model has a ``plm``."""
    from recbole.config import Config

    from recbole_embsum.text.backbone import plm_model_type

    without_sizes = {key: value for key, value in overrides.items() if key != "plm_config"}
    config = Config(model=model_name, dataset="mind", config_dict={"data_path": data_path, **without_sizes})
    if not config["plm"]:
        return config, None
    family = plm_model_type(config)
    plm_config = {**(config["plm_config"] or {}), **sizes[family]}  # the packaged one's other fields (token types)
    config = Config(model=model_name, dataset="mind", config_dict={
        "data_path": data_path, **overrides, "plm_init": "scratch", "plm_config": plm_config})
    return config, family


def grow_vocabulary(model, size):
    """Resize the token embeddings of every outermost Hugging Face model inside ``model`` to ``size`` rows."""
    from transformers import PreTrainedModel

    grown = []
    for name, module in model.named_modules():
        if isinstance(module, PreTrainedModel) and not any(name.startswith(outer + ".") for outer in grown):
            if module.get_input_embeddings().num_embeddings < size:
                module.resize_token_embeddings(size, mean_resizing=False)
            grown.append(name)


def measure(model_name, data_path, overrides, sizes, steps):
    """``{train_s, train, cold, warm, parameters, peak_bytes}`` of ``model_name`` (rows/s for train/cold/warm)."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, init_seed

    import recbole_embsum  # noqa: F401  (registers the models)

    rss_start = _rss_bytes()
    config, family = model_config(model_name, data_path, overrides, sizes)
    cuda = config["device"].type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    init_seed(config["seed"], True)
    train, valid, _ = data_preparation(config, create_dataset(config))
    model = get_model(model_name)(config, train._dataset)
    if family and sizes is PAPER_SIZES:
        grow_vocabulary(model, PAPER_VOCAB[family])
    model = model.to(config["device"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    train_batch = next(iter(train)).to(config["device"])
    valid_batch = next(iter(valid))[0].to(config["device"])

    def step():
        torch.manual_seed(0)  # the same negatives for every model and every repetition
        optimizer.zero_grad(set_to_none=True)
        losses = model.calculate_loss(train_batch)
        sum(losses if isinstance(losses, tuple) else (losses,)).backward()
        optimizer.step()

    model.train()
    step()  # warm-up
    train_seconds = statistics.median(_timed(step) for _ in range(steps))
    model.eval()
    with torch.no_grad():
        cold, warm = [], []
        for _ in range(steps):
            model.train(False)  # empties the item-vector cache
            cold.append(_timed(lambda: model.predict(valid_batch)))
            warm.append(_timed(lambda: model.predict(valid_batch)))
    if cuda:
        peak = torch.cuda.max_memory_allocated()
    else:  # ru_maxrss: KiB on Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_start
    rows_train, rows_valid = len(train_batch), len(valid_batch)
    return {"train_s": train_seconds, "train": rows_train / train_seconds,
            "cold": rows_valid / statistics.median(cold), "warm": rows_valid / statistics.median(warm),
            "parameters": sum(p.numel() for p in model.parameters()), "peak_bytes": peak}


def _child(queue, *args):
    logging.basicConfig(level=logging.WARNING)
    try:
        queue.put(("ok", measure(*args)))
    except Exception as error:  # one model's failure is one line of the table
        queue.put(("failed", f"{type(error).__name__}: {error}".replace("\n", " ")[:300]))


def measure_isolated(context, *args):
    """``measure`` in a child process (its own peak memory; a crash does not stop the others)."""
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, *args))
    process.start()
    process.join()
    if process.exitcode != 0 or queue.empty():
        return "failed", f"the measuring process ended with exit code {process.exitcode}"
    return queue.get()


def registered(model_name):
    from recbole_embsum import compat

    try:
        compat.check_model_name(model_name)
    except compat.UnknownModelError:
        return False
    return True


def format_table(rows, reference, device, note):
    """The printed table: one line per model (or its error), ratios to EmbSum when it was measured."""
    header = (f"{'model':<11} {'params':>12} {'step s':>8} {'train rows/s':>13} {'score cold rows/s':>18} "
              f"{'score warm rows/s':>18} {'peak MiB':>9}")
    lines = [header + ("   x EmbSum (step time / peak memory / cold / warm scoring)" if reference else "")]
    for name, (status, value) in rows.items():
        if status != "ok":
            lines.append(f"{name:<11} {status}: {value}")
            continue
        line = (f"{name:<11} {value['parameters']:>12,} {value['train_s']:>8.3f} {value['train']:>13.1f} "
                f"{value['cold']:>18.1f} {value['warm']:>18.1f} {value['peak_bytes'] / 2**20:>9.0f}")
        if reference:
            line += (f"   {value['train_s'] / reference['train_s']:.2f} / "
                     f"{value['peak_bytes'] / max(reference['peak_bytes'], 1):.2f} / "
                     f"{value['cold'] / reference['cold']:.2f} / {value['warm'] / reference['warm']:.2f}")
        lines.append(line)
    lines.append(f"(device {device}; {note})")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", choices=("paper", "small"), default="paper",
                        help="backbones at the paper's sizes (default) or small ones")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated; EmbSum for the ratios")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32, help="training rows per step")
    parser.add_argument("--eval-batch-size", type=int, default=256, help="labeled validation rows scored per call")
    parser.add_argument("--history", type=int, default=60, help="latest history items read (paper: 60)")
    parser.add_argument("--steps", type=int, default=5, help="timed repetitions (median)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parse_args(parser, {"sizes": "small", "users": 60, "items": 80, "batch_size": 8, "eval_batch_size": 64,
                               "history": 20, "steps": 2}, argv)
    sys.argv = sys.argv[:1]  # RecBole's Config reads the command line too; ours is not RecBole's
    logging.basicConfig(level=logging.WARNING)

    overrides = {}
    if args.sizes == "small":
        with open(SMALL_YAML, encoding="utf-8") as handle:
            overrides.update(yaml.safe_load(handle))
    overrides.update({"train_batch_size": args.batch_size, "eval_batch_size": args.eval_batch_size,
                      "MAX_ITEM_LIST_LENGTH": args.history, "device": args.device, "use_gpu": args.device != "cpu",
                      "show_progress": False, "state": "ERROR", "drop_empty_history": False,
                      "eval_global_vector": "start"})
    sizes = PAPER_SIZES if args.sizes == "paper" else QUICK_SIZES
    # fork on the CPU (no re-import per model); spawn on CUDA (a CUDA context does not survive fork)
    context = multiprocessing.get_context("spawn" if args.device.startswith("cuda") else "fork")
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    rows = {}
    with tempfile.TemporaryDirectory() as root:
        data_path = build_data(root, args.users, args.items)
        for name in models:
            if not registered(name):
                rows[name] = ("not measured", "not in this installed version of recbole-embsum")
                continue
            rows[name] = measure_isolated(context, name, data_path, overrides, sizes, args.steps)
    reference = rows.get("EmbSum", ("", None))[1] if rows.get("EmbSum", ("",))[0] == "ok" else None
    if args.sizes == "paper":
        size_text = "paper sizes (" + ", ".join(
            f"{family} {values.get('d_model', values.get('hidden_size'))}-d" for family, values in sizes.items()) + ")"
    else:
        size_text = "small sizes"
    memory_text = "CUDA allocator peak" if args.device.startswith("cuda") else "growth of the measuring process's RSS"
    note = (f"{size_text}, backbones randomly initialised; training batch {args.batch_size}, labeled batch "
            f"{args.eval_batch_size}, {args.history} history items, synthetic MIND of {args.users} users / "
            f"{args.items} news; peak memory: {memory_text}")
    print(format_table(rows, reference, args.device, note))


if __name__ == "__main__":
    main()
