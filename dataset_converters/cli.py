"""`recbole-embsum convert mind|goodreads ...` and `recbole-embsum synth mind|goodreads ...`.

Registered in `recbole_embsum/cli.py` through `register(subparsers)`; converter modules are imported here only as
light argparse definitions (they import nothing heavy).
"""
from . import goodreads, mind, synth


def register(subparsers):
    """Adds `convert mind|goodreads` and `synth`; they read and write files only, so they run without RecBole
    (`needs_recbole=False`: `recbole-embsum` skips registering with RecBole, seconds of torch/RecBole imports)."""
    convert = subparsers.add_parser("convert", help="convert MIND or Goodreads raw files into RecBole atomic files",
                                    description="Convert a dataset in its published format into <output>/<name>/.")
    datasets = convert.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    mind.add_arguments(datasets.add_parser("mind", help="MIND (small, large or demo): folders or .zip files",
                                           description=mind.__doc__.split("\n")[0]))
    goodreads.add_arguments(datasets.add_parser("goodreads", help="Goodreads (UCSD Book Graph) JSON lines",
                                                description=goodreads.__doc__.split("\n")[0]))
    synth_parser = subparsers.add_parser(
        "synth", help="write synthetic MIND or Goodreads data in the raw published formats",
        description=synth.__doc__.split("\n")[0])
    synth.add_arguments(synth_parser)
    for parser in (*datasets.choices.values(), synth_parser):
        parser.set_defaults(needs_recbole=False)
