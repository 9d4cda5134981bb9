"""Time and peak memory of per-impression evaluation at MIND-small dev scale (~2.7M rows, ~73k impressions).

Each step runs in a fresh subprocess, so its peak RSS (``ru_maxrss``) is its own; "peak extra" is that peak minus
the resident size once the synthetic rows exist (scores float32, labels float32, impression ids int64).

Steps:
  collect-recbole   RecBole's Collector over eval batches (torch.cat per batch, deepcopy at the end)
  collect-ours      ImpressionCollector over the same batches (chunks, one cat per key, moved not copied)
  metrics           imp_auc, imp_mrr, imp_ndcg@5, imp_ndcg@10 from the collected tensors (one shared ranking)
  torchmetrics-loop torchmetrics' per-query nDCG@10 + binary AUROC in a Python loop over a sample of impressions,
                    extrapolated to all impressions (what "just call torchmetrics per impression" would cost)

Usage: python benchmarks/bench_metrics.py [--rows 2700000] [--impressions 73000] [--batch 4096] [--quick]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from quick import parse_args

STEPS = ("collect-recbole", "collect-ours", "metrics", "torchmetrics-loop")
METRICS = ["AUC", "imp_auc", "imp_mrr", "imp_ndcg@5", "imp_ndcg@10"]


def synthetic_rows(rows, impressions, seed=0):
    """[rows] scores, 0/1 labels (~4% clicks, as in MIND), impression ids in contiguous blocks of random size."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, rows), size=impressions - 1, replace=False))
    impression = torch.zeros(rows, dtype=torch.int64)
    impression[torch.from_numpy(cuts)] = 1
    impression = torch.cumsum(impression, 0)
    scores = torch.rand(rows, generator=torch.Generator().manual_seed(seed))
    labels = (torch.rand(rows, generator=torch.Generator().manual_seed(seed + 1)) < 0.04).float()
    return scores, labels, impression


def rss_bytes():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def collect(collector_cls, scores, labels, impression, batch):
    config = {
        "metrics": METRICS, "eval_args": {"mode": {"valid": "labeled", "test": "labeled"}}, "topk": [10],
        "device": torch.device("cpu"), "LABEL_FIELD": "label", "IMPRESSION_ID_FIELD": "impression_id",
    }
    collector = collector_cls(config)
    for start in range(0, scores.numel(), batch):
        rows = slice(start, start + batch)
        interaction = {"label": labels[rows], "impression_id": impression[rows]}
        collector.eval_batch_collect(scores[rows], interaction, None, None)
    data = collector.get_data_struct()
    return sum(data[key].numel() * data[key].element_size() for key in data._data_dict) / 2**20


def run_step(step, args):
    # Every import happens before the rows exist and before the resident size is read.
    from recbole.evaluator.collector import Collector, DataStruct
    from torchmetrics.functional.classification import binary_auroc
    from torchmetrics.functional.retrieval import retrieval_normalized_dcg

    from recbole_embsum.evaluation.collector import ImpressionCollector
    from recbole_embsum.evaluation.metrics import IMPRESSION_KEY, IMPRESSION_METRICS, register_metrics

    register_metrics()
    scores, labels, impression = synthetic_rows(args.rows, args.impressions)
    before = rss_bytes()
    start = time.perf_counter()
    collected_mb = None
    if step == "collect-recbole":
        collected_mb = collect(Collector, scores, labels, impression, args.batch)
    elif step == "collect-ours":
        collected_mb = collect(ImpressionCollector, scores, labels, impression, args.batch)
    elif step == "metrics":
        data = DataStruct()
        data.set("rec.score", scores)
        data.set("data.label", labels)
        data.set(IMPRESSION_KEY, impression)
        for cls in IMPRESSION_METRICS.values():
            cls({"metric_decimal_place": 4}).calculate_metric(data)
    else:
        bounds = torch.searchsorted(impression, torch.arange(args.loop_sample + 1))
        for i in range(args.loop_sample):
            rows = slice(int(bounds[i]), int(bounds[i + 1]))
            target = labels[rows].long()
            if 0 < int(target.sum()) < target.numel():
                binary_auroc(scores[rows], target)
            retrieval_normalized_dcg(scores[rows], target, top_k=10)
        elapsed = (time.perf_counter() - start) * args.impressions / args.loop_sample
        return {"seconds": elapsed, "peak_extra_mb": None, "collected_mb": None}
    elapsed = time.perf_counter() - start
    peak_extra = max(0, peak_bytes() - before) / 2**20
    return {"seconds": elapsed, "peak_extra_mb": peak_extra, "collected_mb": collected_mb}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_700_000)
    parser.add_argument("--impressions", type=int, default=73_000)
    parser.add_argument("--batch", type=int, default=4096, help="eval_batch_size")
    parser.add_argument("--loop-sample", type=int, default=2000, help="impressions timed in the torchmetrics loop")
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    args = parse_args(parser, {"rows": 20_000, "impressions": 1_000, "batch": 1024, "loop_sample": 100})
    if args.step:
        torch.set_num_threads(1)
        print(json.dumps(run_step(args.step, args)))
        return
    data_mb = args.rows * (4 + 4 + 8) / 2**20
    print(f"{args.rows} rows, {args.impressions} impressions, eval batch {args.batch}; data itself {data_mb:.0f} MB")
    results = {}
    for step in STEPS:
        command = [sys.executable, __file__, "--step", step] + [
            f"--rows={args.rows}", f"--impressions={args.impressions}", f"--batch={args.batch}",
            f"--loop-sample={args.loop_sample}",
        ]
        child = subprocess.run(command, capture_output=True, text=True)
        if child.returncode:
            sys.exit(f"step {step} failed:\n{child.stderr}")
        results[step] = json.loads(child.stdout)
        peak = results[step]["peak_extra_mb"]
        collected = results[step]["collected_mb"]
        peak_text = "-" if peak is None else f"{peak:6.0f} MB"
        collected_text = "" if collected is None else f"   collected {collected:4.0f} MB"
        print(f"{step:18s} {results[step]['seconds']:8.2f} s   peak extra {peak_text}{collected_text}")
    recbole, ours = results["collect-recbole"], results["collect-ours"]
    print(f"collector: {recbole['seconds'] / ours['seconds']:.1f}x faster; peak per collected MB "
          f"{recbole['peak_extra_mb'] / recbole['collected_mb']:.2f} (RecBole, score+label) vs "
          f"{ours['peak_extra_mb'] / ours['collected_mb']:.2f} (ours, score+label+impression id)")
    print(f"metrics vs torchmetrics per-impression loop (nDCG@10 + AUC only): "
          f"{results['torchmetrics-loop']['seconds'] / results['metrics']['seconds']:.0f}x faster")


if __name__ == "__main__":
    main()
