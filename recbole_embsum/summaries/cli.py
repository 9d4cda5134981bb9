"""`recbole-embsum summarize`: write the LLM user-interest summaries of a converted dataset (paper Appendix A)."""
import logging
import sys


def register(subparsers):
    """Add the ``summarize`` subcommand; every option's default lives in properties/summaries.yaml."""
    parser = subparsers.add_parser(
        "summarize",
        help="write <dataset>.summaries.jsonl: one user-interest summary per training user, from the history "
        "before the user's first training impression (resumable)",
        description="Summarise each training user's history before their first training impression (never a "
        "training click) into three sentences with an LLM (openai: any "
        "OpenAI-compatible server; transformers: a local causal LM) or the offline heuristic. Defaults: "
        "properties/summaries.yaml; --config FILE overrides them; flags override both. A rerun skips users "
        "already answered with the same prompt and retries failed ones.",
    )
    parser.add_argument("--dataset", required=True, help="dataset name, e.g. mind")
    parser.add_argument("--data-path", required=True, help="folder holding <dataset>/<dataset>.train.inter etc.")
    parser.add_argument("--config", action="append", default=[], metavar="FILE",
                        help="YAML file of summary options (repeatable; later files win)")
    parser.add_argument("--backend", choices=["heuristic", "openai", "transformers"])
    parser.add_argument("--model", help="served model name (openai) or HF name/path (transformers)")
    parser.add_argument("--heuristic-style", choices=["full", "brief"],
                        help="heuristic: full (three sentences) or brief (the user's main categories in one sentence)")
    parser.add_argument("--base-url", action="append", metavar="URL",
                        help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1 (repeatable: load is spread)")
    parser.add_argument("--api-key", help="API key (default: $OPENAI_API_KEY)")
    parser.add_argument("--concurrency", type=int, help="openai: requests in flight at once")
    parser.add_argument("--max-retries", type=int, help="openai: retries per request")
    parser.add_argument("--timeout", type=float, help="openai: seconds per request")
    parser.add_argument("--batch-size", type=int, help="transformers: prompts per generate() call")
    parser.add_argument("--device", help="transformers: torch device")
    parser.add_argument("--max-new-tokens", type=int, help="length cap of one summary")
    parser.add_argument("--temperature", type=float, help="0 = greedy")
    parser.add_argument("--max-items", type=int, help="items per prompt (paper: 60)")
    parser.add_argument("--domain", choices=["auto", "news", "books"], help="which built-in template")
    parser.add_argument("--template", metavar="FILE", help="YAML file overriding parts of the prompt template")
    parser.add_argument("--split", choices=["train", "test"], default="train",
                        help="train: the training users (default); test: the test users not in training, from their "
                             "test-time history (references for `evaluate-summaries`, paper Table 3), written to "
                             "<dataset>.test.summaries.jsonl by default")
    parser.add_argument("--max-users", type=int, help="only the first N training users")
    parser.add_argument("--output", metavar="FILE", help="summary file (default: <data-path>/<dataset>/"
                                                         "<dataset>.summaries.jsonl)")
    parser.add_argument("--overwrite", action="store_true", default=None,
                        help="replace an output file made with another prompt or model")
    parser.set_defaults(func=run)


_OPTION_FLAGS = ("backend", "model", "heuristic_style", "base_url", "api_key", "concurrency", "max_retries", "timeout", "batch_size",
                 "device", "max_new_tokens", "temperature", "max_items", "domain", "template", "max_users", "output",
                 "overwrite")


def run(args):
    """Resolve options, summarise, print the counts; exit status 1 when some users failed."""
    from .backends import BackendFatalError
    from .options import OptionsError, resolve_options
    from .pipeline import SummaryMismatchError, TooManyFailures, summarize_dataset

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        options = resolve_options(args.config, {name: getattr(args, name) for name in _OPTION_FLAGS})
        report = summarize_dataset(args.data_path, args.dataset, options, split=args.split)
    except (OptionsError, SummaryMismatchError, TooManyFailures, BackendFatalError, ValueError, OSError) as err:
        print(f"recbole-embsum summarize: error: {err}", file=sys.stderr)
        return 2
    print(f"{report.path}: {report.users} users, {report.cached} cached, {report.asked} asked, "
          f"{len(report.failed)} failed ({report.backend} / {report.model}, {report.seconds:.1f}s)"
          + (f"; {report.no_history} users skipped: empty history" if report.no_history else "")
          + (f"; {report.no_text} users skipped: none of their items has text" if report.no_text else ""))
    if report.failed:
        print("failed users (rerun the same command to retry them):")
        for user, reason in report.failed.items():
            print(f"  {user}: {reason}")
        return 1
    return 0
