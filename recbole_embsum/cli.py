"""`recbole-embsum`: the plugin's tools as subcommands (convert, synth, summarize, compare, export, ...).

Each command module exposes ``register(subparsers)`` and sets ``func`` on its parsers; this file only groups them.
The parser is a ``flags.DashedParser``, and argparse builds every subcommand's parser with its class: options are
dashed everywhere and their old underscore spellings still work, with a deprecation line (``recbole_embsum/flags.py``).
Command modules import only argparse-level code at the top (heavy libraries inside the command), so building the parser
imports neither torch nor RecBole; RecBole registration happens just before a command runs.
"""
import importlib
import sys

from recbole_embsum.flags import DashedParser

# Modules that add subcommands, in the order `--help` lists them.
COMMAND_MODULES = [
    "dataset_converters.cli",
    "recbole_embsum.summaries.cli",
    "recbole_embsum.evaluation.cli",
    "recbole_embsum.serving.cli",
    "recbole_embsum.demo",
]


def build_parser():
    parser = DashedParser(
        prog="recbole-embsum",
        description="EmbSum for RecBole: data converters, LLM summaries, comparisons, export and serving. "
        "Training itself runs through `run_recbole --model=EmbSum --dataset=...`.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if getattr(args, "needs_recbole", True):  # file-only commands (convert, synth) set it False
        import recbole_embsum

        recbole_embsum.register()  # deferred by the console script until a command actually runs
    # RecBole's Config reads sys.argv for --key=value settings and warns about every other token ("command line args
    # [...] will not be used in RecBole"); our commands pass their RecBole settings explicitly (config_dict), so
    # while a command runs RecBole sees no arguments of ours.
    argv_before = sys.argv
    sys.argv = sys.argv[:1]
    try:
        return args.func(args) or 0
    finally:
        sys.argv = argv_before


if __name__ == "__main__":
    sys.exit(main())
