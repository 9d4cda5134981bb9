"""Train and scoring throughput of the content baselines (NAML, NRMS, Fastformer, CAUM, MINS) beside EmbSum's, on the
same batches.

Every model is built on the same converted synthetic MIND data and gets the same first training batch (same seed,
same batch size, so the same clicks and impression negatives) and the same first labeled validation batch:

* train: one optimizer step (forward, NCE backward, Adam step), rows/s, median of ``--steps`` after one warm-up;
* score: ``predict`` on the validation batch in evaluation mode, rows/s: "cold" includes encoding every item once
  (the first batch of an evaluation pass), "warm" reuses the cached item vectors (every later batch).

Sizes: the packaged defaults (the papers' sizes; EmbSum as a t5-small-sized T5 from scratch, offline), or with
``--quick`` the small sizes of benchmarks/small_models.yaml. Prints one row per model and the ratio to EmbSum.

    python benchmarks/bench_models.py [--quick] [--models EmbSum,NRMS,...] [--users 200 --items 300]
                                      [--batch-size 32 --steps 5 --device cpu]
"""
import argparse
import logging
import os
import statistics
import sys
import tempfile
import time

import torch
import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_YAML = os.path.join(REPO_ROOT, "benchmarks", "small_models.yaml")
MODELS = ("EmbSum", "NAML", "NRMS", "Fastformer", "CAUM", "MINS")


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


def measure(model_name, data_path, overrides, steps):
    """(train rows/s, cold scoring rows/s, warm scoring rows/s, parameters) of ``model_name``."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, init_seed

    import recbole_embsum  # noqa: F401  (registers the models)

    config = Config(model=model_name, dataset="mind", config_dict={"data_path": data_path, **overrides})
    init_seed(config["seed"], True)
    train, valid, _ = data_preparation(config, create_dataset(config))
    model = get_model(model_name)(config, train._dataset).to(config["device"])
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
    rows_train, rows_valid = len(train_batch), len(valid_batch)
    parameters = sum(p.numel() for p in model.parameters())
    return (rows_train / train_seconds, rows_valid / statistics.median(cold), rows_valid / statistics.median(warm),
            parameters)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small model sizes (benchmarks/small_models.yaml)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated; EmbSum first for the ratios")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32, help="training rows per step")
    parser.add_argument("--eval-batch-size", type=int, default=256, help="labeled validation rows scored per call")
    parser.add_argument("--steps", type=int, default=5, help="timed repetitions (median)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config reads the command line too; ours is not RecBole's
    logging.basicConfig(level=logging.WARNING)

    overrides = {}
    if args.quick:
        with open(SMALL_YAML, encoding="utf-8") as handle:
            overrides.update(yaml.safe_load(handle))
    else:
        overrides["plm_init"] = "scratch"  # t5-small sizes (plm_config default), offline
    overrides.update({"train_batch_size": args.batch_size, "eval_batch_size": args.eval_batch_size,
                      "device": args.device, "use_gpu": args.device != "cpu", "show_progress": False,
                      "state": "ERROR", "drop_empty_history": False, "eval_global_vector": "start"})
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    with tempfile.TemporaryDirectory() as root:
        data_path = build_data(root, args.users, args.items)
        rows = {name: measure(name, data_path, overrides, args.steps) for name in models}
    reference = rows.get("EmbSum")
    print(f"{'model':<11} {'params':>10} {'train rows/s':>13} {'score cold rows/s':>18} {'score warm rows/s':>18}"
          + ("   x EmbSum (train / cold / warm)" if reference else ""))
    for name, (train, cold, warm, parameters) in rows.items():
        line = f"{name:<11} {parameters:>10,} {train:>13.1f} {cold:>18.1f} {warm:>18.1f}"
        if reference:
            line += f"   {train / reference[0]:.2f} / {cold / reference[1]:.2f} / {warm / reference[2]:.2f}"
        print(line)
    print(f"(device {args.device}, training batch {args.batch_size}, labeled batch {args.eval_batch_size}, "
          f"{'--quick sizes' if args.quick else 'packaged default sizes'})")


if __name__ == "__main__":
    main()
