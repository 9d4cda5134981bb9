"""Online scoring from stored poly-embeddings vs the machine's matmul rate and vs re-encoding text (t5-small sizes).

Sizes are the paper's: d = 512 (t5-small), m = 32 UPE codes, n = 4 CPE codes. Four measurements:

1. grid: a users x candidates grid scored from an export folder (random embeddings written with ExportWriter) by
   ``EmbeddingStore.iter_scores`` (Eqs. (3)-(4) via ``model.scorer.poly_score_grid``) -> pairs/s.
2. matmul: the same FLOPs as plain ``torch.matmul`` (both products of Eqs. (3)-(4) for every pair: A B^T and
   A gelu(B W^s)^T) in two shapes, one product per chunk ``[U*m, d] @ [d, 2*n*c]`` and cache-sized products
   ``[2*n*b, d] @ [d, U*m]``; the faster is the machine's matmul rate. Grid and matmuls run interleaved ``--repeats``
   times at each of ``--threads`` (the machine may be shared); the ratio grid / matmul is of the median times.
3. re-encoding: a randomly initialised EmbSum of t5-small sizes (plm_init: scratch, vocabulary resized to t5's
   32128) on synthetic MIND; time per user (60-item history: session encoding, greedy summary decoding as
   ``predict`` does, UPE) and per item (CPE), measured on a small sample and extrapolated per pair -> speed-up of
   stored scoring over re-encoding the pair (user + item), and over re-encoding only the item (user cached).
4. memory: streaming top-k over 1M candidates for one user from a float16 export -> peak anonymous memory (heap;
   the memory-mapped shards are page cache) above the level after opening the store, and the time taken.

Run: ``python benchmarks/bench_scoring.py [--users 16 --items 16384 --threads 1,2 --repeats 5 --grid-only
--stream-items 1000000 --workdir DIR] [--quick]``.
The exports (about 8 GiB for 1M candidates in float16) go to a temporary folder, removed at the end.
"""
import argparse
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from quick import parse_args
from sampling import PeakSampler
from recbole_embsum.serving.store import EmbeddingStore
from recbole_embsum.serving.writer import ExportWriter, make_plan

M, N, D = 32, 4, 512
T5_SMALL_VOCAB = 32128


def write_random_export(folder, n_items, n_users, dtype, shard_rows, seed=0):
    """An export folder of random embeddings; one random block is reused for every item shard (content is irrelevant
    to speed and memory, and it keeps writing 1M items fast)."""
    generator = torch.Generator().manual_seed(seed)
    w_s = torch.randn(D, D, generator=generator) / D ** 0.5
    users = torch.randn(n_users, M, D, generator=generator)
    block = torch.randn(min(shard_rows, n_items), N, D, generator=generator)
    block_keys = F.gelu(block @ w_s.T)  # gelu(B W^s)
    plan = make_plan({"benchmark": "random"}, {"m": M, "n": N, "d": D}, [f"N{i}" for i in range(n_items)],
                     [f"U{u}" for u in range(n_users)], dtype, shard_rows, False)
    writer = ExportWriter(folder, plan)
    for index, start, stop in writer.pending("items"):
        writer.write_shard("items", index, {"poly": block[: stop - start], "keys": block_keys[: stop - start]})
    for index, start, stop in writer.pending("users"):
        writer.write_shard("users", index, {"poly": users[start:stop]})
    writer.finish(w_s)


def best_time(function, repeats):
    """Fastest of ``repeats`` runs (after one warm-up run), in seconds."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def load_average():
    return "load %.1f" % os.getloadavg()[0]


def matmul_references(a, chunks):
    """Plain ``torch.matmul`` of the grid's FLOPs in two shapes; the faster is the machine's matmul rate.

    ``chunk``: one product per chunk, ``[U*m, d] @ [d, 2*n*c]`` (a result of U*m x 2*n*c floats, 64 MiB for 16 users
    and 4096 items). ``blocks``: products of cache-sized item blocks, ``[2*n*b, d] @ [d, U*m]``, b = 64 items (the
    shape of the grid's own products, without its softmax).
    """
    a_t = a.T  # [d, U*m]

    def chunk():
        for codes in chunks:
            torch.matmul(a, codes.T)  # [U*m, 2*n*c]

    def blocks():
        for codes in chunks:
            for rows in codes.split(2 * N * 64):
                torch.matmul(rows, a_t)  # [2*n*b, U*m]

    return {"matmul, one product per chunk": chunk, "matmul, 64-item blocks": blocks}


def bench_grid(folder, n_users, chunk_size, repeats, threads):
    """The grid and the plain matmuls of the same FLOPs at each thread count, interleaved ``repeats`` times (the
    machine is shared: all of them see the same load); medians, and the grid's rate over the best matmul's."""
    store = EmbeddingStore(folder)
    users = [f"U{u}" for u in range(n_users)]
    n_items = store.n_items
    pairs = n_users * n_items
    flops = 2 * 2 * M * N * D * pairs

    def grid():
        for _ in store.iter_scores(users, chunk_size):
            pass

    a = store.user_polys(users).reshape(-1, D)  # [U*m, d]
    chunks = [torch.cat([poly, keys], dim=1).reshape(-1, D) for _, poly, keys in store.folders[0].item_chunks(
        chunk_size)]  # [2*n*c, d] each: B and gelu(B W^s) side by side
    runs = {"grid": grid, **matmul_references(a, chunks)}
    rates = {}
    for count in threads:
        torch.set_num_threads(count)
        before = load_average()
        wall = {name: [] for name in runs}
        cpu = {name: [] for name in runs}
        for function in runs.values():
            function()  # warm-up
        for _ in range(repeats):
            for name, function in runs.items():
                start_wall, start_cpu = time.perf_counter(), time.process_time()
                function()
                wall[name].append(time.perf_counter() - start_wall)
                cpu[name].append(time.process_time() - start_cpu)
        print(f"{count} thread(s), {n_users} users x {n_items} candidates, chunk {chunk_size}, {repeats} interleaved "
              f"repeats ({before} before, {load_average()} after); median wall time, rate, CPU time:", flush=True)
        for name in runs:
            seconds = statistics.median(wall[name])
            print(f"  {name:<30} {seconds:7.3f} s  {pairs / seconds:>12,.0f} pairs/s  {flops / seconds / 1e9:6.1f} "
                  f"GFLOP/s  (CPU {statistics.median(cpu[name]):.3f} s)")
        reference = min((name for name in runs if name != "grid"), key=lambda name: statistics.median(wall[name]))
        ratio = statistics.median(wall[reference]) / statistics.median(wall["grid"])
        ratios = sorted(r / g for r, g in zip(wall[reference], wall["grid"]))
        cpu_ratio = statistics.median(cpu[reference]) / statistics.median(cpu["grid"])
        print(f"  ratio grid / best matmul ({reference}): {ratio:.2f} of the medians (per repeat {ratios[0]:.2f} to "
              f"{ratios[-1]:.2f}; of CPU times {cpu_ratio:.2f}) (target >= 0.8)", flush=True)
        rates[count] = pairs / statistics.median(wall["grid"])
    return rates


def bench_reencode(workdir, sample_users, sample_items, repeats):
    """Seconds per user and per item for a t5-small-sized EmbSum re-encoding text."""
    from recbole.config import Config
    from recbole.data import create_dataset

    from dataset_converters.impressions import ConvertOptions
    from dataset_converters.mind import convert_mind
    from dataset_converters.synth import synth_mind
    from recbole_embsum.model import EmbSum

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    raw, data = os.path.join(workdir, "raw"), os.path.join(workdir, "data")
    synth_mind(raw, users=100, items=400, seed=0)
    convert_mind(raw, data, ConvertOptions(name="mind"))
    config = Config(model=EmbSum, dataset="mind",
                    config_file_list=[os.path.join(repo, "properties", "dataset", "mind.yaml"),
                                      os.path.join(repo, "properties", "model", "EmbSum.yaml")],
                    config_dict={"data_path": data, "plm_init": "scratch", "tokenizer_vocab_size": 4000,
                                 "metrics": ["AUC"], "valid_metric": "AUC", "device": "cpu", "state": "WARNING"})
    torch.manual_seed(0)
    model = EmbSum(config, create_dataset(config)).eval()
    model.t5.resize_token_embeddings(T5_SMALL_VOCAB)  # t5-small's vocabulary (LM head cost of decoding)
    n_items = model.item_tokens.size(0) - 1
    tokens_per_item = model.item_token_lengths[1:].float().mean().item()
    generator = torch.Generator().manual_seed(0)
    items = torch.randint(1, n_items + 1, (sample_items,), generator=generator)
    histories = torch.randint(1, n_items + 1, (sample_users, model.k), generator=generator)  # full 60-item histories
    lengths = torch.full((sample_users,), model.k)
    with torch.no_grad():
        per_item = best_time(lambda: model.item_poly_embeddings(items), repeats) / sample_items
        per_user = best_time(lambda: model.user_poly_embeddings(histories, lengths), repeats) / sample_users
    print(f"re-encoding with a t5-small-sized EmbSum ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M "
          f"parameters, {tokens_per_item:.0f} tokens/item, {model.k}-item histories, "
          f"summary up to {model.summary_max_tokens} tokens): {per_user * 1e3:,.0f} ms/user, "
          f"{per_item * 1e3:,.1f} ms/item (samples of {sample_users} users, {sample_items} items)")
    return per_user, per_item


class PeakMemory(PeakSampler):
    """Samples this process's anonymous resident memory (heap, tensors) every few ms in a thread."""

    def __init__(self, interval=0.002):
        super().__init__(self.anonymous_mib, interval)

    @staticmethod
    def anonymous_mib():
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


def stream_in_fresh_process(folder, chunk_size, k):
    """Open the store and stream a top-k in this (fresh) process, so its memory is the stream's alone."""
    before_open = PeakMemory.anonymous_mib()
    store = EmbeddingStore(folder)
    opened = PeakMemory.anonymous_mib()
    start = time.perf_counter()
    with PeakMemory() as memory:
        best = store.topk("U0", k, chunk_size)
    seconds = time.perf_counter() - start
    n_items = store.n_items
    chunk_mib = chunk_size * N * D * 4 * 2 / 2**20  # the float32 copies of B and gelu(B W^s) of one chunk
    print(f"  chunk {chunk_size}: top-{len(best)} of {n_items:,} in {seconds:.1f} s ({n_items / seconds:,.0f} "
          f"candidates/s); anonymous memory: {before_open:.0f} MiB before opening, +{opened - before_open:.0f} MiB "
          f"for the open store (id maps), peak +{memory.peak - opened:.0f} MiB while streaming "
          f"(float32 chunk tensors: {chunk_mib:.0f} MiB)", flush=True)


def bench_stream(folder, n_items, chunk_sizes, k):
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)) / 2**30
    print(f"stream: {n_items:,} float16 candidates on disk ({size:.1f} GiB), each run in a fresh process", flush=True)
    context = multiprocessing.get_context("spawn")
    for chunk_size in chunk_sizes:
        child = context.Process(target=stream_in_fresh_process, args=(folder, chunk_size, k))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"streaming run failed (exit code {child.exitcode})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=16, help="users in the grid (default: %(default)s)")
    parser.add_argument("--items", type=int, default=16384, help="candidates in the grid (default: %(default)s)")
    parser.add_argument("--chunk-size", type=int, default=4096,
                        help="grid items per chunk (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved grid/matmul repeats (default: %(default)s)")
    parser.add_argument("--stream-items", type=int, default=1_000_000)
    parser.add_argument("--stream-chunks", default="4096,32768", help="chunk sizes for the 1M stream")
    parser.add_argument("--reencode-users", type=int, default=2)
    parser.add_argument("--reencode-items", type=int, default=32)
    parser.add_argument("--workdir", default=None, help="kept if given; a temporary folder otherwise")
    parser.add_argument("--threads", default=None,
                        help="torch thread counts for the grid, comma separated, e.g. 1,2 (default: torch's own choice)")
    parser.add_argument("--grid-only", action="store_true", help="only the grid vs matmul measurement")
    args = parse_args(parser, {"users": 4, "items": 1024, "chunk_size": 512, "repeats": 1, "stream_items": 20_000,
                               "stream_chunks": "4096", "reencode_users": 1, "reencode_items": 4})
    threads = [int(count) for count in args.threads.split(",")] if args.threads else [torch.get_num_threads()]
    workdir = args.workdir or tempfile.mkdtemp(prefix="bench_scoring_")
    try:
        print(f"torch {torch.__version__}, {os.cpu_count()} CPUs; d={D}, m={M}, n={N}", flush=True)
        write_random_export(os.path.join(workdir, "grid"), args.items, args.users, "float32", 4096)
        stored_rate = bench_grid(os.path.join(workdir, "grid"), args.users, args.chunk_size, args.repeats,
                                 threads)[threads[-1]]
        if args.grid_only:
            return
        per_user, per_item = bench_reencode(os.path.join(workdir, "reencode"), args.reencode_users,
                                            args.reencode_items, 1)
        print(f"speed-up of stored scoring: {stored_rate * (per_user + per_item):,.0f}x over re-encoding user and "
              f"item per pair ({1 / (per_user + per_item):.2f} pairs/s), {stored_rate * per_item:,.0f}x over "
              f"re-encoding only the item ({1 / per_item:,.0f} pairs/s)")
        stream = os.path.join(workdir, "stream")
        start = time.perf_counter()
        write_random_export(stream, args.stream_items, 1, "float16", 16384)
        print(f"(wrote the {args.stream_items:,}-item export in {time.perf_counter() - start:.0f} s)")
        bench_stream(stream, args.stream_items, [int(c) for c in args.stream_chunks.split(",")], k=10)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
