"""`recbole-embsum compare` (models side by side) and `evaluate-summaries` (ROUGE of generated summaries); heavy
imports happen inside the commands."""
import argparse
import ast
import logging
import os
import sys

from recbole_embsum.flags import DashedParser


def parse_overrides(extra):
    """``["--epochs=2", "--learning_rate=1e-3"]`` -> ``{"epochs": 2, "learning_rate": 0.001}`` (Python literals,
    else the text), as RecBole reads ``--key=value`` from its command line. ValueError naming every token that is not
    a config key written that way (a dashed name is a misspelt option of the command: RecBole keys have no dashes)."""
    overrides, unknown = {}, []
    for token in extra:
        key, sep, value = token[2:].partition("=") if token.startswith("--") else ("", "", "")
        if not sep or not key.isidentifier():
            unknown.append(token)
            continue
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    if unknown:
        raise ValueError(f"unrecognized arguments: {' '.join(unknown)} (RecBole config values are written "
                         f"--key=value, e.g. --epochs=3)")
    return overrides


class _OverridesParser(DashedParser):
    """A subcommand parser that keeps unknown ``--key=value`` tokens as ``args.overrides`` (RecBole config values)
    instead of rejecting them; anything else unknown is still an error."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        try:
            namespace.overrides = parse_overrides(extras)
        except ValueError as error:
            self.error(str(error))
        return namespace, []


def register(subparsers):
    default_class = subparsers._parser_class  # argparse's add_subparsers(parser_class=...), for this parser only
    subparsers._parser_class = _OverridesParser
    try:
        parser = subparsers.add_parser(
            "compare",
            help="train and test several models on the same splits; write results.csv/.md and a bar chart",
            description="Train and test each model on the same converted dataset (same files, seed and metrics), then "
            "write results.csv, results.md and results.png to --output and print the table. Any further --key=value "
            "is a RecBole config override applied to every model (e.g. --epochs=3 --gpu_id=0).",
        )
    finally:
        subparsers._parser_class = default_class
    parser.add_argument("--dataset", required=True, help="dataset name (folder under --data-path), e.g. mind")
    parser.add_argument("--data-path", required=True, help="folder holding the converted <dataset>/ folder")
    parser.add_argument("--models", default=None,
                        help="comma-separated model names (default: EmbSum,SASRec,GRU4Rec,BPR,Pop; none with "
                        "--ablations alone)")
    parser.add_argument("--ablations", action="store_true", help="also run EmbSum's Table 2 ablations")
    parser.add_argument("--paper-table", action="store_true",
                        help="the paper's Tables 1 and 2: EmbSum, the nine baselines and EmbSum's four ablations with "
                        "the --preset settings; writes paper_tables.md (ours beside the paper's numbers) besides "
                        "results.*; re-run the same command after an interruption: finished runs are not retrained")
    parser.add_argument("--preset", default=None,
                        help="with --paper-table: 'paper' (default; the paper's settings, needs a GPU and the "
                        "hub's checkpoints) or 'cpu-small' (small backbones from scratch, offline)")
    parser.add_argument("--paper-dataset", default=None, choices=("mind", "goodreads"),
                        help="with --paper-table: which of the paper's datasets --dataset is (default: from the "
                        "dataset name)")
    parser.add_argument("--config-files", nargs="*", default=None,
                        help="yaml files or preset names (cpu-small, paper) applied to every model")
    parser.add_argument("--drop-empty-history", action=argparse.BooleanOptionalAction, default=None,
                        help="leave out rows whose history is empty, for every model (SASRec/GRU4Rec cannot read "
                        "them); default: the drop_empty_history of the yaml files (False)")
    parser.add_argument("--output", required=True, help="folder for results.* and checkpoints/")
    parser.add_argument("--seed", type=int, default=None, help="seed for every model (default 2020)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="train every model N times, with seeds seed, seed+1, ...; the table shows mean ± std "
                        "(default 1)")
    parser.add_argument("--title", default=None,
                        help="chart title, e.g. 'MIND-small' or 'synthetic MIND' (default: the dataset name)")
    parser.add_argument("--overwrite", action="store_true", help="replace results.* already in --output")
    parser.set_defaults(func=run_compare)

    parser = subparsers.add_parser(
        "evaluate-summaries",
        help="ROUGE-1/2/L of summaries written by a trained EmbSum for test users not in training (Table 3)",
        description="Load an EmbSum checkpoint, write an interest summary with its decoder for each test user who "
        "is not in the training split (from the test-time history), and score them with ROUGE-1/2/L against "
        "reference summaries (make them with `recbole-embsum summarize --split test`). Writes summaries.jsonl and "
        "rouge.json to --output and prints the table.",
    )
    parser.add_argument("--checkpoint", required=True, help="EmbSum .pth checkpoint saved by RecBole's trainer")
    parser.add_argument("--references", required=True, metavar="FILE",
                        help="reference summaries JSONL, e.g. <data_path>/<dataset>/<dataset>.test.summaries.jsonl")
    parser.add_argument("--output", required=True, help="folder for summaries.jsonl and rouge.json")
    parser.add_argument("--max-users", type=int, default=None, help="only the first N evaluation users")
    parser.add_argument("--batch-size", type=int, default=32, help="users per generate() call")
    parser.add_argument("--overwrite", action="store_true", help="replace summaries.jsonl / rouge.json in --output")
    parser.set_defaults(func=run_evaluate_summaries)


def _overrides(args):
    """compare's RecBole overrides: the --key=value tokens, and drop_empty_history when --(no-)drop-empty-history."""
    if args.drop_empty_history is None:
        return args.overrides
    return {**args.overrides, "drop_empty_history": args.drop_empty_history}


def run_compare(args):
    from recbole_embsum.evaluation import compare

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    seed = compare.DEFAULT_SEED if args.seed is None else args.seed
    if args.paper_table:
        return _run_paper_table(args, seed)
    if args.preset or args.paper_dataset:
        print("recbole-embsum compare: error: --preset and --paper-dataset go with --paper-table; for other "
              "comparisons name a preset with --config-files (e.g. --config-files cpu-small)", file=sys.stderr)
        return 2
    if args.models is None:
        models = [] if args.ablations else list(compare.DEFAULT_MODELS)
    else:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        specs = compare.model_specs(models, args.ablations)
        results = compare.compare(
            specs, args.dataset, args.data_path, args.output, config_file_list=args.config_files,
            overrides=_overrides(args), seed=seed, overwrite=args.overwrite, seeds=args.seeds, title=args.title,
        )
    except (ValueError, FileExistsError) as error:
        print(f"recbole-embsum compare: error: {error}", file=sys.stderr)
        return 2
    with open(os.path.join(args.output, "results.md"), encoding="utf-8") as handle:
        print(handle.read())
    return 0 if all(result.status == "ok" for result in results) else 1


def _run_paper_table(args, seed):
    from recbole_embsum.evaluation import paper_table

    if args.models is not None or args.ablations:
        print("recbole-embsum compare: error: --paper-table runs its own models (Table 1) and ablations (Table 2); "
              "leave out --models and --ablations", file=sys.stderr)
        return 2
    try:
        results, unavailable = paper_table.run_paper_table(
            args.dataset, args.data_path, args.output, preset=args.preset or "paper", which=args.paper_dataset,
            config_file_list=args.config_files, overrides=_overrides(args), seed=seed, seeds=args.seeds,
            title=args.title, overwrite=args.overwrite,
        )
    except (ValueError, FileExistsError) as error:
        print(f"recbole-embsum compare: error: {error}", file=sys.stderr)
        return 2
    with open(os.path.join(args.output, paper_table.OUTPUT_FILE), encoding="utf-8") as handle:
        print(handle.read())
    for name in unavailable:
        print(f"{name}: {paper_table.UNAVAILABLE}; left out of the tables", file=sys.stderr)
    return 0 if all(result.status == "ok" for result in results) else 1


def run_evaluate_summaries(args):
    from recbole_embsum.evaluation import summaries
    from recbole_embsum.outputs import describe_os_error

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.max_users is not None and args.max_users < 1:
        print("recbole-embsum evaluate-summaries: error: --max-users must be >= 1", file=sys.stderr)
        return 2
    try:
        result = summaries.evaluate_summaries(args.checkpoint, args.references, args.output, args.max_users,
                                              args.batch_size, args.overwrite)
    except ValueError as error:
        print(f"recbole-embsum evaluate-summaries: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # unwritable or full --output, existing results, a missing --references
        print(f"recbole-embsum evaluate-summaries: error: {describe_os_error(error)}", file=sys.stderr)
        return 2
    skipped = ", ".join(f"{count} {reason}" for reason, count in result.skipped.items() if count)
    print(f"{len(result.users)} test users not in training" + (f" (left out: {skipped})" if skipped else ""))
    print(summaries.rouge_table(result.rouge))
    print(f"written: {result.files['summaries.jsonl']}, {result.files['rouge.json']}")
    return 0
