"""`recbole-embsum compare`: train and test models side by side; heavy imports happen inside the command."""
import argparse
import ast
import logging
import sys


def parse_overrides(extra):
    """``["--epochs=2", "--learning_rate=1e-3"]`` -> ``{"epochs": 2, "learning_rate": 0.001}`` (Python literals,
    else the text), as RecBole reads ``--key=value`` from its command line."""
    overrides = {}
    for token in extra:
        key, sep, value = token[2:].partition("=") if token.startswith("--") else ("", "", "")
        if not key or not sep:
            raise ValueError(f"unrecognised argument {token!r}: config overrides are written --key=value")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    return overrides


class _OverridesParser(argparse.ArgumentParser):
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
    parser.add_argument("--dataset", required=True, help="dataset name (folder under --data_path), e.g. mind")
    parser.add_argument("--data_path", required=True, help="folder holding the converted <dataset>/ folder")
    parser.add_argument("--models", default="", help="comma-separated model names, e.g. EmbSum,SASRec,BPR,Pop")
    parser.add_argument("--ablations", action="store_true", help="also run EmbSum's Table 2 ablations")
    parser.add_argument("--config_files", nargs="*", default=None, help="yaml files applied to every model")
    parser.add_argument("--output", required=True, help="folder for results.* and checkpoints/")
    parser.add_argument("--seed", type=int, default=None, help="seed for every model (default 2020)")
    parser.add_argument("--overwrite", action="store_true", help="replace results.* already in --output")
    parser.set_defaults(func=run_compare)


def run_compare(args):
    from recbole_embsum.evaluation import compare

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    seed = compare.DEFAULT_SEED if args.seed is None else args.seed
    try:
        specs = compare.model_specs([m.strip() for m in args.models.split(",") if m.strip()], args.ablations)
        results = compare.compare(
            specs, args.dataset, args.data_path, args.output, config_file_list=args.config_files,
            overrides=args.overrides, seed=seed, overwrite=args.overwrite,
        )
    except (ValueError, FileExistsError) as error:
        print(f"recbole-embsum compare: error: {error}", file=sys.stderr)
        return 2
    print(compare.results_markdown(results, compare.metric_columns(results)))
    return 0 if all(result.status == "ok" for result in results) else 1
