"""``recbole-embsum export`` and ``recbole-embsum recommend`` (registered by ``recbole_embsum.cli``).

Heavy imports (torch, RecBole, the model) happen inside the commands, so ``recbole-embsum --help`` stays fast.
"""
import argparse
import logging
import sys


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _id_list(text):
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise argparse.ArgumentTypeError("expected comma-separated item ids, e.g. N1,N2,N3")
    return ids


def run_export(args):
    from recbole_embsum.outputs import describe_os_error

    from .export import export_checkpoint

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        folder = export_checkpoint(args.checkpoint, args.output, items_file=args.items, users_file=args.users,
                                   summaries=args.summaries, batch_size=args.batch_size, shard_rows=args.shard_rows,
                                   dtype=args.dtype, overwrite=args.overwrite, num_workers=args.num_workers,
                                   worker_index=args.worker_index)
    except ValueError as err:
        print(f"recbole-embsum export: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # unwritable or full --output, a missing input file
        print(f"recbole-embsum export: error: {describe_os_error(err)}", file=sys.stderr)
        return 1
    print(folder)
    return 0


def run_recommend(args):
    from .layout import ExportFormatError
    from .recommend import format_recommendations, recommend
    from .store import EmbeddingStore

    try:
        store = EmbeddingStore(*args.embeddings)
        result = recommend(store, args.user, args.candidates, args.topk, args.chunk_size)
    except KeyError as err:
        print(f"recbole-embsum recommend: error: {err.args[0]}", file=sys.stderr)
        return 1
    except (ExportFormatError, ValueError) as err:
        print(f"recbole-embsum recommend: error: {err}", file=sys.stderr)
        return 1
    print(format_recommendations(result, explain=args.explain))
    return 0


def register(subparsers):
    """Add the ``export`` and ``recommend`` subcommands."""
    from .layout import DTYPES

    export = subparsers.add_parser(
        "export", help="precompute poly-embeddings of every item and user (or of new ones) for serving",
        description="Write the CPE of every item and the UPE of every user of a trained EmbSum checkpoint to a "
        "folder of safetensors shards (format: recbole_embsum/serving/layout.py). Rerunning resumes; with --items "
        "and/or --users only those (unseen) items/users are embedded, from their text and history alone. Sharded: "
        "N workers (processes or machines sharing --output) run with --num-workers N --worker-index 0..N-1 (under "
        "torchrun: $WORLD_SIZE and $RANK); each writes every N-th shard, and the run that finds all shards written "
        "(or a final plain export over the same --output) writes manifest.json.")
    export.add_argument("--checkpoint", required=True, help="RecBole checkpoint of EmbSum (saved/EmbSum-*.pth)")
    export.add_argument("--output", required=True, help="export folder (created; resumed if it holds this export)")
    export.add_argument("--items", default=None,
                        help="cold start: embed the items of this MIND news.tsv or converted .text.jsonl")
    export.add_argument("--users", default=None,
                        help="cold start: embed the users of this MIND behaviors.tsv (their latest history)")
    export.add_argument("--summaries", action="store_true",
                        help="also generate and store each user's interest summary (for recommend --explain)")
    export.add_argument("--batch-size", type=_positive, default=64, help="items/users per model call (default 64)")
    export.add_argument("--shard-rows", type=_positive, default=4096, help="rows per shard file (default 4096)")
    export.add_argument("--dtype", choices=DTYPES, default="float32", help="storage dtype (default float32)")
    export.add_argument("--overwrite", action="store_true",
                        help="replace an export of another checkpoint/inputs/options in --output")
    export.add_argument("--num-workers", type=_positive, default=None,
                        help="sharded export: number of workers (default 1)")
    export.add_argument("--worker-index", type=int, default=None,
                        help="sharded export: this worker, 0..N-1; writes the shards whose index %% N is this "
                        "(default 0)")
    export.set_defaults(func=run_export)

    rec = subparsers.add_parser(
        "recommend", help="score candidates or the whole catalogue for a user from exported embeddings",
        description="Rank items for a user with Eqs. (3)-(4) from an export folder; later folders (e.g. a cold-start "
        "export) add to and override earlier ones.")
    rec.add_argument("--embeddings", required=True, nargs="+", metavar="DIR", help="export folder(s)")
    rec.add_argument("--user", required=True, help="raw user id")
    what = rec.add_mutually_exclusive_group(required=True)
    what.add_argument("--candidates", type=_id_list, help="comma-separated raw item ids to rank")
    what.add_argument("--topk", type=_positive, help="rank the whole catalogue and print the best K")
    rec.add_argument("--chunk-size", type=_positive, default=8192,
                     help="items scored at a time (bounds memory; default 8192)")
    rec.add_argument("--explain", action="store_true", help="print the user's stored interest summary first")
    rec.set_defaults(func=run_recommend)
