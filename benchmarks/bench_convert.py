"""Conversion speed and peak memory on a MIND-small-sized synthetic input.

Generates (with dataset_converters.synth) about 160k impressions over 65k news with ~37 candidates per impression and
~22 history items, in the raw MIND format, then converts it and prints rows/s and peak RSS. The generation is not
timed. Run: `python benchmarks/bench_convert.py [--users 57000 --items 65000 --workdir DIR] [--quick]`.
"""
import argparse
import multiprocessing
import os
import resource
import shutil
import tempfile
import time

from dataset_converters.impressions import ConvertOptions
from dataset_converters.mind import convert_mind
from dataset_converters.synth import synth_mind
from quick import parse_args


def peak_rss_mb():
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=57000, help="~2.8 impressions per user (default: %(default)s)")
    parser.add_argument("--items", type=int, default=65000)
    parser.add_argument("--candidates", type=int, default=37)
    parser.add_argument("--workdir", default=None, help="kept if given; a temporary folder otherwise")
    args = parse_args(parser, {"users": 300, "items": 400, "candidates": 10})
    workdir = args.workdir or tempfile.mkdtemp(prefix="bench_convert_")
    try:
        raw, out = os.path.join(workdir, "raw"), os.path.join(workdir, "out")
        start = time.perf_counter()
        # generated in a child process, so this process's peak RSS is the converter's alone
        child = multiprocessing.Process(target=synth_mind, args=(raw,), kwargs=dict(
            users=args.users, items=args.items, seed=0, candidates=args.candidates))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"generation failed (exit code {child.exitcode})")
        generated = time.perf_counter() - start
        rss_before = peak_rss_mb()
        start = time.perf_counter()
        report = convert_mind(raw, out, ConvertOptions(name="mind", overwrite=True))
        seconds = time.perf_counter() - start
        splits = report["splits"]
        rows = sum(s["rows"] for s in splits.values())
        impressions = sum(s["impressions"] for s in splits.values())
        candidates = sum(s["positives"] + s["negatives"] for s in splits.values())
        raw_mb = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(raw) for f in fs) / 2**20
        out_mb = sum(os.path.getsize(os.path.join(out, "mind", f)) for f in os.listdir(os.path.join(out, "mind"))) / 2**20
        print(f"input: {impressions} impressions, {report['items']} news, {candidates / impressions:.1f} candidates"
              f"/impression, history {report['history_per_user']}/user, {raw_mb:.0f} MiB raw "
              f"(generated in {generated:.1f} s)")
        print(f"convert: {seconds:.1f} s, {rows} rows written ({rows / seconds:,.0f} rows/s, "
              f"{impressions / seconds:,.0f} impressions/s), {out_mb:.0f} MiB out")
        print(f"peak RSS of the converting process: {peak_rss_mb():.0f} MiB (before converting: {rss_before:.0f} MiB)")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
