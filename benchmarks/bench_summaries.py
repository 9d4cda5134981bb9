"""Throughput of `recbole-embsum summarize`: the offline heuristic at dataset scale, and the openai backend's
concurrency against a local OpenAI-compatible server with a fixed per-request latency.

Steps:
  heuristic  a synthetic MIND-like folder (items with ~12-word titles and ~40-word abstracts, 18 categories, histories
             of ~22 items as in the paper's Table 4) summarised end to end, then rerun (everything cached)
  openai     the same prompts sent to a local server that answers after --latency seconds, at several concurrency
             levels and with two servers; users/s and the speed-up over one request at a time

Usage: python benchmarks/bench_summaries.py [--users 5000] [--items 20000] [--llm-users 200] [--latency 0.05] [--quick]
"""
import argparse
import csv
import http.server
import json
import logging
import random
import tempfile
import threading
import time
from pathlib import Path

from quick import parse_args
from recbole_embsum.summaries import resolve_options, summarize_dataset

CATEGORIES = [f"category{k}" for k in range(18)]


def synthetic_dataset(root, name, users, items, seed=0):
    """Write a converted folder with ``users`` one-click users over ``items`` items (vocabulary of 5000 words)."""
    rng = random.Random(seed)
    words = sorted({"".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 9))) for _ in range(5000)})
    folder = Path(root) / name
    folder.mkdir(parents=True)
    with open(folder / f"{name}.text.jsonl", "w", encoding="utf-8") as handle:
        for k in range(items):
            handle.write(json.dumps({"item_id": f"N{k}", "title": " ".join(rng.choices(words, k=12)),
                                     "abstract": " ".join(rng.choices(words, k=40)),
                                     "category": rng.choice(CATEGORIES), "subcategory": "sub"}) + "\n")
    with open(folder / f"{name}.train.inter", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["impression_id:token", "user_id:token", "item_id:token", "label:float", "timestamp:float",
                         "item_id_list:token_seq", "neg_items:token_seq"])
        for user in range(users):
            history = " ".join(f"N{rng.randrange(items)}" for _ in range(rng.randint(1, 44)))
            writer.writerow([f"I{user}", f"U{user}", f"N{rng.randrange(items)}", "1", str(user), history, ""])


def latency_server(latency):
    """A chat-completions server answering every request after ``latency`` seconds; returns (server, base URL)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(latency)
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": "A summary."}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


def timed(data_path, name, **overrides):
    options = resolve_options(overrides=overrides)
    start = time.perf_counter()
    report = summarize_dataset(data_path, name, options)
    return time.perf_counter() - start, report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--llm-users", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parse_args(parser, {"users": 200, "items": 500, "llm_users": 20, "latency": 0.01})
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as root:
        synthetic_dataset(root, "bench", args.users, args.items)
        seconds, report = timed(root, "bench")
        size = report.path.stat().st_size
        print(f"heuristic: {report.asked} users in {seconds:.2f}s = {report.asked / seconds:.0f} users/s "
              f"(includes reading the folder and fitting tf-idf on {args.items} items); file {size / 1e6:.2f} MB")
        seconds, report = timed(root, "bench")
        print(f"heuristic rerun: {report.cached} cached, {report.asked} asked in {seconds:.2f}s")

        servers = [latency_server(args.latency) for _ in range(2)]
        base = None
        for concurrency, urls in ((1, 1), (8, 1), (32, 1), (32, 2)):
            output = Path(root) / f"llm-{concurrency}-{urls}.jsonl"
            seconds, report = timed(root, "bench", backend="openai", model="bench", concurrency=concurrency,
                                    base_url=[url for _, url in servers[:urls]], max_users=args.llm_users,
                                    output=str(output))
            rate = report.asked / seconds
            base = base or rate
            print(f"openai: concurrency {concurrency:2d}, {urls} server(s), latency {args.latency * 1000:.0f} ms: "
                  f"{report.asked} users in {seconds:.2f}s = {rate:.1f} users/s ({rate / base:.1f}x)")
        for server, _ in servers:
            server.shutdown()


if __name__ == "__main__":
    main()
