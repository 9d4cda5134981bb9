"""Time and peak memory of RecBole loading a converted dataset (create_dataset + data_preparation).

Every model, EmbSum included, goes through this before its first step, so it bounds what a machine needs:
    python benchmarks/bench_convert.py --workdir /tmp/benchconv      # a MIND-small-sized converted dataset
    python benchmarks/bench_load.py --data_path /tmp/benchconv/out --dataset mind [--model Pop]
"""
import argparse
import resource
import time


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_path", required=True, help="folder holding <dataset>/ (a converter's --output)")
    parser.add_argument("--dataset", default="mind")
    parser.add_argument("--model", default="Pop", help="any model; loading does not depend on its size")
    args = parser.parse_args()

    import recbole_embsum  # noqa: F401  (registers the packaged dataset yaml)
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation

    baseline = peak_rss_mib()
    config = Config(model=args.model, dataset=args.dataset,
                    config_dict={"data_path": args.data_path, "show_progress": False, "state": "ERROR"})
    started = time.perf_counter()
    dataset = create_dataset(config)
    loaded = time.perf_counter()
    train, valid, test = data_preparation(config, dataset)
    prepared = time.perf_counter()
    rows = len(dataset.inter_feat)
    peak = peak_rss_mib() - baseline
    print(f"{args.dataset} ({rows:,} rows: train {len(train.dataset):,}, valid {len(valid.dataset):,}, "
          f"test {len(test.dataset):,}) for {args.model}")
    print(f"create_dataset: {loaded - started:.1f} s; data_preparation: {prepared - loaded:.1f} s; "
          f"{rows / (prepared - started):,.0f} rows/s")
    print(f"peak RSS above the interpreter with RecBole imported: {peak:,.0f} MiB ({peak * 1024 / rows:.2f} KiB/row)")


if __name__ == "__main__":
    main()
