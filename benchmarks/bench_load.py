"""Time and peak memory of RecBole loading a converted dataset (create_dataset + data_preparation).

Every model, EmbSum included, goes through this before its first step, so it bounds what a machine needs. Each
measurement runs in a fresh process, so its peak RSS is that load's alone (above the interpreter with RecBole
imported; memory-mapped store pages count while resident). Memory shared between processes is measured from
/proc/<pid>/smaps_rollup: PSS (each shared page divided among the processes that map it) and USS (pages no other
process maps); RSS would count a shared page once per process.

    # one converted folder (e.g. from benchmarks/bench_convert.py --workdir /tmp/benchconv)
    python benchmarks/bench_load.py --data_path /tmp/benchconv/out --dataset mind [--model Pop]
    # the growth curve: synthetic MIND at 1/4, 1/2 and 1x MIND-small's size, generated and converted once into
    # --workdir (kept), loaded in --layout store (default) or inline (the layout before the history store);
    # --fractions large: a MIND-large-sized dataset (2.23M train, 376k dev impressions, 37 candidates each)
    python benchmarks/bench_load.py --workdir /tmp/benchload [--fractions 0.25,0.5,1] [--layout store] [--model Pop]
    # DDP: N ranks (gloo, CPU) loading the same folder at once; prints each rank's memory, the total and its ratio to
    # one process alone
    python benchmarks/bench_load.py --data_path /tmp/benchconv/out --world_size 4
    # evaluation after loading (Pop trained one epoch, then the test split scored and its metrics computed): time and
    # peak memory of the evaluation alone, per evaluated row
    python benchmarks/bench_load.py --data_path /tmp/benchconv/out --evaluate
    # --quick: the growth curve at two tiny sizes in a temporary folder (checks that the script runs)
"""
import argparse
import multiprocessing
import os
import resource
import socket
import tempfile
import time

from quick import parse_args
from sampling import PeakSampler

MIND_SMALL_USERS = 57000  # with 65k news and ~37 candidates: ~160k impressions, ~2.56M rows (bench_convert.py)
MIND_SMALL_ITEMS = 65000
CANDIDATES = 37  # per impression, as in MIND
# MIND-large (Wu et al. 2020): 2.23M train and 376k dev impressions. Synthetic users get 2 train impressions on average
# (90% of them) and, with dev_share, 1 dev impression on average: 1.24M users, dev_share 0.3035.
MIND_LARGE = {"users": 1_239_000, "items": 161_000, "dev_share": 0.3035}


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_mib(pid="self"):
    """{"pss", "uss", "rss"} of a process now, in MiB (NaN where /proc cannot be read)."""
    fields = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    fields[parts[0].rstrip(":")] = int(parts[1]) / 1024
    except OSError:
        pass
    nan = float("nan")
    return {"pss": fields.get("Pss", nan), "rss": fields.get("Rss", nan),
            "uss": fields.get("Private_Clean", nan) + fields.get("Private_Dirty", nan)}


def reset_peak_rss():
    """Start a new peak RSS (VmHWM) for this process (Linux >= 4.0; elsewhere the peak keeps its start)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        pass


def peak_since_reset_mib():
    """VmHWM: this process's peak RSS since it started or since `reset_peak_rss`."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return peak_rss_mib()


def load(data_path, dataset, model, ddp=None, extra=None, evaluate=False):
    """create_dataset + data_preparation in this process; returns the measurements as a dict.

    ``data_pss_mib`` / ``data_uss_mib``: what loading added to this process's PSS / USS (after the process group
    formed, so the interpreter and its libraries are not counted). With ``evaluate``, the model is trained one epoch
    and the test split evaluated; ``eval_*`` are that evaluation's time, rows and peak RSS above the RSS before it.
    """
    import recbole_embsum  # noqa: F401  (registers the packaged dataset yaml and the store hooks)
    import torch.distributed as dist
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation

    baseline = peak_rss_mib()
    config_dict = {"data_path": data_path, "show_progress": False, "state": "ERROR", **(extra or {}), **(ddp or {})}
    started = time.perf_counter()
    config = Config(model=model, dataset=dataset, config_dict=config_dict)
    if ddp:
        dist.barrier()  # every rank has imported everything: the libraries' pages are shared from here on
    before = memory_mib()
    dataset_obj = create_dataset(config)
    loaded = time.perf_counter()
    train, valid, test = data_preparation(config, dataset_obj)
    prepared = time.perf_counter()
    peak = peak_rss_mib() - baseline
    if ddp:
        dist.barrier()  # every rank has loaded: shared pages are divided among all of them
    after = memory_mib()
    result = {"rows": len(dataset_obj.inter_feat), "train": len(train.dataset), "valid": len(valid.dataset),
              "test": len(test.dataset), "create_s": loaded - started, "prepare_s": prepared - loaded,
              "seconds": prepared - started, "peak_mib": peak, "pss_mib": after["pss"], "uss_mib": after["uss"],
              "data_pss_mib": after["pss"] - before["pss"], "data_uss_mib": after["uss"] - before["uss"]}
    if evaluate:
        result.update(evaluate_test(config, train, test))
    return result


def evaluate_test(config, train, test):
    """Train ``config``'s model one epoch, then time the evaluation of ``test`` and its peak RSS above the start."""
    from recbole.utils import get_model, get_trainer

    from recbole_embsum.shared_dataset import release_freed_heap

    model = get_model(config["model"])(config, train.dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer._train_epoch(train, 0, show_progress=False)
    release_freed_heap()  # loading's freed heap goes back to the system, so the evaluation cannot hide in it
    with open("/proc/self/status", encoding="ascii") as handle:
        start = next(int(line.split()[1]) / 1024 for line in handle if line.startswith("VmRSS:"))
    reset_peak_rss()
    started = time.perf_counter()
    metrics = trainer.evaluate(test, load_best_model=False, show_progress=False)
    return {"eval_s": time.perf_counter() - started, "eval_rows": len(test.dataset),
            "eval_peak_mib": peak_since_reset_mib() - start, "eval_metrics": dict(metrics)}


def _child(queue, function, *args):
    queue.put(function(*args))


def in_children(function, args_per_child):
    """``function(*args)`` for each args tuple, each in a fresh (spawned) process, all at once, so that each peak RSS
    is that process's own; returns the results (in order) and the peak of their summed PSS."""
    context = multiprocessing.get_context("spawn")
    queue = context.SimpleQueue()
    children = [context.Process(target=_child, args=(queue, function) + tuple(args)) for args in args_per_child]
    for child in children:
        child.start()
    summed_pss = lambda: sum(memory_mib(child.pid)["pss"] for child in children if child.is_alive())  # noqa: E731
    with PeakSampler(summed_pss, interval=0.1) as sampler:
        results = [queue.get() for _ in children]  # before join: a child exits only once the queue is read
    for child in children:
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"{function.__name__} failed in a child process (exit code {child.exitcode})")
    return results, sampler.peak


def in_child(function, *args):
    """``function(*args)`` in a fresh (spawned) process, so that its peak RSS is its own; returns the result."""
    return in_children(function, [args])[0][0]


def load_in_child(data_path, dataset, model, extra=None, evaluate=False):
    return in_child(load, data_path, dataset, model, None, extra, evaluate)


def describe(result, dataset, model):
    rows = result["rows"]
    return (f"{dataset} ({rows:,} rows: train {result['train']:,}, valid {result['valid']:,}, test {result['test']:,}) "
            f"for {model}\ncreate_dataset: {result['create_s']:.1f} s; data_preparation: {result['prepare_s']:.1f} s; "
            f"{rows / result['seconds']:,.0f} rows/s\npeak RSS above the interpreter with RecBole imported: "
            f"{result['peak_mib']:,.0f} MiB ({result['peak_mib'] * 1024 / rows:.2f} KiB/row)")


# -- growth curve ---------------------------------------------------------------------------------------------------
def synthetic_folder(workdir, fraction, layout):
    """`<workdir>/x<fraction>/<layout>` holding `mind/` (fraction "large": MIND-large-sized), generated and
    converted unless already there (reused across runs); prints the conversion's time and peak memory."""
    from dataset_converters.synth import synth_mind

    base = os.path.join(workdir, "large" if fraction == "large" else f"x{fraction:g}")
    raw, out = os.path.join(base, "raw"), os.path.join(base, layout)
    if not os.path.isdir(raw):
        sizes = MIND_LARGE if fraction == "large" else {"users": int(MIND_SMALL_USERS * fraction),
                                                        "items": MIND_SMALL_ITEMS}
        synth_mind(raw + ".tmp", seed=0, candidates=CANDIDATES, **sizes)
        os.replace(raw + ".tmp", raw)
    if not os.path.isfile(os.path.join(out, "mind", "mind.stats.json")):
        rows, seconds, peak = in_child(convert, raw, out, layout)
        print(f"converted {base}: {rows:,} rows in {seconds:.1f} s, peak RSS {peak:,.0f} MiB", flush=True)
    return out


def convert(raw, out, layout):
    """Converts synthetic MIND; returns (rows, seconds, peak RSS MiB)."""
    from dataset_converters.impressions import ConvertOptions
    from dataset_converters.mind import convert_mind

    started = time.perf_counter()
    report = convert_mind(raw, out, ConvertOptions(name="mind", layout=layout, overwrite=True))
    rows = sum(split["rows"] for split in report["splits"].values())
    return rows, time.perf_counter() - started, peak_rss_mib()


def growth(workdir, fractions, layout, model):
    print(f"| size | rows | load s | rows/s | peak MiB | KiB/row |  ({layout} layout, {model})")
    print("|---|---|---|---|---|---|")
    results = []
    for fraction in fractions:
        data_path = synthetic_folder(workdir, fraction, layout)
        result = load_in_child(data_path, "mind", model)
        results.append(result)
        size = "MIND-large-sized" if fraction == "large" else f"{fraction:g}x MIND-small"
        print(f"| {size} | {result['rows']:,} | {result['seconds']:.1f} | "
              f"{result['rows'] / result['seconds']:,.0f} | {result['peak_mib']:,.0f} | "
              f"{result['peak_mib'] * 1024 / result['rows']:.2f} |", flush=True)
    first, last = results[0], results[-1]
    scale = last["rows"] / first["rows"]
    print(f"from the smallest to the largest size: rows x{scale:.2f}, time x{last['seconds'] / first['seconds']:.2f}, "
          f"peak memory x{last['peak_mib'] / first['peak_mib']:.2f} (linear growth: both about x{scale:.2f})")


# -- DDP ------------------------------------------------------------------------------------------------------------
def _rank(rank, world_size, port, data_path, dataset, model, extra):
    ddp = {"nproc": world_size, "world_size": world_size, "local_rank": rank, "offset": 0, "ip": "127.0.0.1",
           "port": port}
    return rank, load(data_path, dataset, model, ddp, extra)


def ranks(data_path, dataset, model, world_size, extra=None):
    """Loads the folder in ``world_size`` DDP ranks at once (gloo) and in one process alone; prints both and ratios."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results, peak_total = in_children(
        _rank, [(rank, world_size, port, data_path, dataset, model, extra) for rank in range(world_size)])
    results = dict(results)
    for rank in sorted(results):
        r = results[rank]
        print(f"rank {rank}: {r['seconds']:.1f} s, peak RSS {r['peak_mib']:,.0f} MiB; after loading: PSS "
              f"{r['pss_mib']:,.0f} MiB, of which loading added {r['data_pss_mib']:,.0f} MiB (USS "
              f"+{r['data_uss_mib']:,.0f} MiB)")
    (single,), peak_single = in_children(load, [(data_path, dataset, model, None, extra)])
    total_pss = sum(r["pss_mib"] for r in results.values())
    total_data = sum(r["data_pss_mib"] for r in results.values())
    print(f"one process alone: {single['seconds']:.1f} s, peak RSS {single['peak_mib']:,.0f} MiB; after loading: PSS "
          f"{single['pss_mib']:,.0f} MiB, of which loading added {single['data_pss_mib']:,.0f} MiB; sampled peak PSS "
          f"{peak_single:,.0f} MiB")
    print(f"{world_size} ranks: PSS after loading {total_pss:,.0f} MiB in all = {total_pss / single['pss_mib']:.2f}x "
          f"one process (interpreters included: each holds ~{single['pss_mib'] - single['data_pss_mib']:,.0f} MiB "
          f"of its own before loading); loading added {total_data:,.0f} MiB in all = "
          f"{total_data / single['data_pss_mib']:.2f}x one process; sampled peak of the summed PSS "
          f"{peak_total:,.0f} MiB = {peak_total / peak_single:.2f}x one process")


def describe_evaluation(result):
    rows = result["eval_rows"]
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in result["eval_metrics"].items())
    return (f"evaluation of the test split ({rows:,} rows): {result['eval_s']:.1f} s, {rows / result['eval_s']:,.0f} "
            f"rows/s; peak RSS above the RSS before it {result['eval_peak_mib']:,.0f} MiB "
            f"({result['eval_peak_mib'] * 1024 / rows:.2f} KiB/row); {metrics}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_path", help="folder holding <dataset>/ (a converter's --output)")
    parser.add_argument("--dataset", default="mind")
    parser.add_argument("--model", default="Pop", help="any model; loading does not depend on its size")
    parser.add_argument("--workdir", help="growth curve: generate, convert and load synthetic MIND here (kept)")
    parser.add_argument("--fractions", default="0.25,0.5,1",
                        help="sizes of the growth curve, in MIND-small units, or 'large' (MIND-large-sized)")
    parser.add_argument("--layout", choices=("store", "inline"), default="store", help="layout of the growth curve")
    parser.add_argument("--world_size", type=int, default=1, help="load in this many DDP ranks at once (gloo, CPU)")
    parser.add_argument("--evaluate", action="store_true",
                        help="after loading, train the model one epoch and measure the evaluation of the test split")
    parser.add_argument("--drop_empty_history", action="store_true",
                        help="leave out rows with an empty history (SASRec and GRU4Rec need it on data that has them)")
    args = parse_args(parser, {"fractions": "0.002,0.004"})
    extra = {"drop_empty_history": True} if args.drop_empty_history else None
    if args.quick and not (args.workdir or args.data_path):
        with tempfile.TemporaryDirectory(prefix="bench_load_") as workdir:
            growth(workdir, [float(f) for f in args.fractions.split(",")], args.layout, args.model)
    elif args.workdir:
        fractions = [f if f == "large" else float(f) for f in args.fractions.split(",")]
        growth(args.workdir, fractions, args.layout, args.model)
    elif args.data_path is None:
        parser.error("give --data_path (one folder) or --workdir (growth curve)")
    elif args.world_size > 1:
        ranks(args.data_path, args.dataset, args.model, args.world_size, extra)
    else:
        result = load_in_child(args.data_path, args.dataset, args.model, extra, args.evaluate)
        print(describe(result, args.dataset, args.model))
        if args.evaluate:
            print(describe_evaluation(result))


if __name__ == "__main__":
    main()
