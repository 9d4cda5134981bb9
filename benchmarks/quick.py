"""``--quick`` for every benchmark: the smallest sizes, so a test can check that each script still runs and prints
its numbers (which then mean nothing). Explicit size flags still win over the quick defaults."""


def parse_args(parser, quick_defaults, argv=None):
    """``parser.parse_args(argv)`` with a ``--quick`` flag that swaps in ``quick_defaults`` (option dest -> value)."""
    parser.add_argument("--quick", action="store_true",
                        help="smallest sizes, to check that the benchmark runs (its numbers then mean nothing)")
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**quick_defaults)
        args = parser.parse_args(argv)
    return args
