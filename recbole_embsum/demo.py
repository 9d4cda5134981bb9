"""`recbole-embsum demo`: the whole path offline on CPU in about 8 minutes, on synthetic MIND-format data.

1. synthetic raw MIND files with planted topic interests (``dataset_converters.synth``);
2. conversion to RecBole atomic files (``dataset_converters.mind``);
3. heuristic interest summaries (the ``brief`` style: one sentence naming the user's main categories) of the
   training users, and of the test users not in training (references);
4. EmbSum with the packaged ``cpu-small`` preset (a small T5 built from scratch with its own tokenizer; the demo
   changes only the epochs and lambda, and says so) against RecBole's Pop, BPR and SASRec on the same splits
   (``evaluation.compare``): table, csv and bar chart;
5. summaries written by the trained EmbSum for unseen test users, with their ROUGE (``evaluation.summaries``).

Every model runs with ``drop_empty_history: True`` so SASRec can take part and all are tested on the same rows.
With MIND and internet, the same steps run on the real data with a pretrained backbone (see :data:`REAL_DATA_HINT`).
"""
import logging
import os
import shutil
import sys

logger = logging.getLogger(__name__)

DATASET = "mind"
SEED = 2020
# EmbSum runs with the packaged preset PRESET by name (properties/presets/cpu-small.yaml: a 2+1-layer T5 with d = 64
# built from scratch with its own tokenizer, k = 20 history items, batch 32); the demo changes only what EMBSUM_DEMO
# lists, and its printout says so above the table.
PRESET = "cpu-small"
EMBSUM_DEMO = {
    # The preset's 3 epochs are 66 optimizer steps on this data's ~740 training clicks: too few for the decoder to
    # learn to name a user's interests. Measured on this data (12 test users not in training, how many summaries are
    # specific to their user): lambda 1, 12 epochs of linear decay: 1 (3 distinct texts; L_NCE pulls the shared
    # encoder its own way); lambda 5, 10 epochs of linear decay: 4 (2 texts); lambda 5, 12 epochs of linear decay: 10;
    # lambda 5, 10 epochs at a constant rate: 12.
    "epochs": 10,
    "summary_weight": 5.0,  # lambda in Eq. (6) (paper 0.05), so that the decoder learns to summarise in a short run
    "lr_scheduler": "constant",  # after the warm-up (the preset's linear decay starves the decoder's last epochs)
}
# The demo's summaries, the decoder's training targets and the references of its ROUGE: the heuristic's brief style
# (one sentence naming the categories that make up at least a fifth of the user's history), which the demo's small
# decoder learns from 164 users in minutes; the full style's counts, keywords and latest title it does not.
SUMMARY_STYLE = "brief"
# Synthetic data sizes and training lengths: the default demo (about 8 minutes on a 2-core CPU: one cpu-small step
# of 32 users takes 1-2 s), and --quick (the test's end-to-end run: a smaller T5 than the preset's, one
# epoch).
SIZES = {
    "full": {"users": 200, "items": 150, "baseline_epochs": 20, "summary_users": 20, "embsum": EMBSUM_DEMO},
    "quick": {"users": 120, "items": 150, "baseline_epochs": 2, "summary_users": 5,
              "embsum": {"epochs": 1, "tokenizer_vocab_size": 400, "summary_max_tokens": 16,
                         "plm_config": {"d_model": 16, "d_ff": 32, "num_layers": 1, "num_decoder_layers": 1,
                                        "num_heads": 2, "d_kv": 8}}},
}
BASELINES = {
    "SASRec": {"n_layers": 1, "n_heads": 1, "hidden_size": 32, "inner_size": 64, "learning_rate": 0.002},
    "BPR": {"embedding_size": 32, "learning_rate": 0.002},
    "Pop": {},
}


def preset_values(name=PRESET):
    """The values of a packaged preset (``properties/presets/<name>.yaml``)."""
    import yaml

    from recbole_embsum import presets

    with open(presets.preset_path(name), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def embsum_settings(quick=False):
    """EmbSum's config in the demo: the preset by name, plus the demo's changes (EMBSUM_DEMO, or --quick's)."""
    return {"embsum_preset": PRESET, **SIZES["quick" if quick else "full"]["embsum"]}


def describe_embsum(quick=False):
    """The printout's line on how EmbSum ran: the preset, and what the demo changed."""
    changes = ", ".join(f"{key}={value}" for key, value in SIZES["quick" if quick else "full"]["embsum"].items())
    return f"EmbSum ran with the {PRESET} preset (properties/presets/{PRESET}.yaml) and {changes}."


REAL_DATA_HINT = """With MIND, run the same path on the real data with an LLM's summaries (the paper's, the full heuristic style
or the demo's brief one: --heuristic-style). `--config-files paper` is the paper's EmbSum (pretrained t5-small,
downloaded once, lambda 0.05, 10 epochs; one GPU of >= 80 GB); `--config-files cpu-small` the demo's, offline on a CPU:
  recbole-embsum convert mind --input PATH/TO/MINDsmall --output data
  recbole-embsum summarize --dataset mind --data-path data --backend openai --model ... --base-url ...
  recbole-embsum compare --dataset mind --data-path data --models EmbSum,SASRec,BPR,Pop --drop-empty-history \\
      --config-files paper --output results
  recbole-embsum summarize --dataset mind --data-path data --split test --backend openai --model ... --base-url ...
  recbole-embsum evaluate-summaries --checkpoint results/checkpoints/EmbSum-....pth \\
      --references data/mind/mind.test.summaries.jsonl --output results/summaries"""
STEP_FOLDERS = ("raw", "data", "comparison", "summaries")


def register(subparsers):
    parser = subparsers.add_parser(
        "demo",
        help="offline end-to-end demo on synthetic MIND data: convert, summarise, EmbSum vs baselines, summaries",
        description="Run the whole path offline on CPU: synthetic MIND-format data, conversion, heuristic summaries, "
        "a small EmbSum trained from scratch against RecBole's Pop, BPR and SASRec (table and chart), and summaries "
        "written by the trained EmbSum. Prints where everything went.",
    )
    parser.add_argument("--output", default="embsum-demo", help="folder for every output (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one epoch (a smoke test, ~1 minute)")
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace the demo's own folders ({', '.join(STEP_FOLDERS)}) in --output")
    parser.set_defaults(func=run)


def _prepare_output(output, overwrite):
    """Create ``output``; refuse when a demo folder is already there, unless ``overwrite`` (then only those go)."""
    present = [name for name in STEP_FOLDERS if os.path.exists(os.path.join(output, name))]
    if present and not overwrite:
        raise FileExistsError(f"{output} already holds {', '.join(present)} from an earlier demo; pass --overwrite "
                              f"or another --output")
    for name in present:
        shutil.rmtree(os.path.join(output, name))
    os.makedirs(output, exist_ok=True)


def run_demo(output, quick=False, overwrite=False):
    """Run every step; returns ``(comparison results, summary evaluation)``."""
    from dataset_converters.impressions import ConvertOptions
    from dataset_converters.mind import convert_mind
    from dataset_converters.synth import synth_mind
    from recbole_embsum.evaluation import compare
    from recbole_embsum.evaluation.summaries import evaluate_summaries
    from recbole_embsum.summaries import resolve_options, summaries_path, summarize_dataset

    sizes = SIZES["quick" if quick else "full"]
    _prepare_output(output, overwrite)
    folders = {name: os.path.join(output, name) for name in STEP_FOLDERS}

    logger.info("1/5 synthetic MIND data: %d users, %d news", sizes["users"], sizes["items"])
    synth_mind(folders["raw"], users=sizes["users"], items=sizes["items"], seed=0)
    logger.info("2/5 converting to RecBole atomic files")
    convert_mind(folders["raw"], folders["data"], ConvertOptions(name=DATASET))
    logger.info("3/5 heuristic interest summaries, %s style (training users, then test users not in training)",
                SUMMARY_STYLE)
    options = resolve_options(overrides={"backend": "heuristic", "heuristic_style": SUMMARY_STYLE})
    for split in ("train", "test"):
        summarize_dataset(folders["data"], DATASET, options, split=split)

    logger.info("4/5 EmbSum against baselines on the same splits")
    specs = [compare.RunSpec("EmbSum", "EmbSum", embsum_settings(quick))]
    specs += [compare.RunSpec(name, name, {**config, "epochs": sizes["baseline_epochs"]})
              for name, config in BASELINES.items()]
    # Every model of the table reads the same most recent k items of each history: the preset's k.
    results = compare.compare(specs, DATASET, folders["data"], folders["comparison"],
                              overrides={"drop_empty_history": True, "show_progress": False,
                                         "MAX_ITEM_LIST_LENGTH": preset_values()["MAX_ITEM_LIST_LENGTH"]},
                              seed=SEED, title="synthetic MIND")

    logger.info("5/5 summaries written by the trained EmbSum for test users it never trained on")
    checkpoints = sorted(os.scandir(os.path.join(folders["comparison"], "checkpoints")), key=lambda e: e.name)
    embsum = [entry.path for entry in checkpoints if entry.name.startswith("EmbSum-")]
    evaluation = None
    if embsum:
        evaluation = evaluate_summaries(embsum[-1], str(summaries_path(folders["data"], DATASET, "test")),
                                        folders["summaries"], max_users=sizes["summary_users"])
    return results, evaluation


def run(args):
    """The ``demo`` subcommand: run, then print the table, a few summaries, the output paths and the MIND hint."""
    from recbole_embsum.evaluation import compare
    from recbole_embsum.evaluation.rouge import looks_meaningful, rouge_without_shared_prefix, user_specific_count
    from recbole_embsum.evaluation.summaries import rouge_table
    from recbole_embsum.summaries import load_summaries, summaries_path

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        results, evaluation = run_demo(args.output, args.quick, args.overwrite)
    except FileExistsError as error:
        print(f"recbole-embsum demo: error: {error}", file=sys.stderr)
        return 2
    comparison = os.path.join(args.output, "comparison")
    print("\nTest results on the synthetic MIND data (same rows for every model):\n")
    print(describe_embsum(args.quick) + "\n")
    print(compare.results_markdown(results, compare.metric_columns(results)))
    if evaluation is not None:
        references = load_summaries(summaries_path(os.path.join(args.output, "data"), DATASET, "test"))
        print(f"Summaries written by EmbSum for {len(evaluation.users)} test users not in training, vs the heuristic "
              f"references ({SUMMARY_STYLE} style: the categories of at least a fifth of the user's history):\n")
        print(rouge_table(evaluation.rouge))
        generated = [evaluation.generated[user] for user in evaluation.users]
        wanted = [references[user] for user in evaluation.users]
        prefix, rouge = rouge_without_shared_prefix(generated, wanted)
        if prefix:
            print(f'The same, without the words every reference starts with ("{prefix}"), which a model can copy '
                  f"without reading the history:\n")
            print(rouge_table(rouge))
        if looks_meaningful(generated, wanted):
            print(f"{len(set(generated))} distinct summaries for {len(generated)} users; the first three:\n")
            for user in evaluation.users[:3]:
                print(f"user {user}\n  EmbSum:    {evaluation.generated[user]}\n  reference: {references[user]}\n")
        else:
            print(f"EmbSum's summaries are not meaningful yet: {len(set(generated))} distinct texts for "
                  f"{len(generated)} users, {user_specific_count(generated, wanted)} of them closer to their own "
                  f"user's reference than to the others' (its decoder has not learned to summarise in this short "
                  f"run), so none is shown as an explanation.\n")
    else:
        print("EmbSum failed (see the table): no summaries to show.\n")
    print(f"Outputs in {args.output}/: raw/ (synthetic MIND files), data/{DATASET}/ (converted dataset and summaries), "
          f"comparison/ (results.csv, results.md, results.png, checkpoints/), summaries/ (summaries.jsonl, "
          f"rouge.json)")
    print(f"  table: {os.path.join(comparison, 'results.md')}\n  chart: {os.path.join(comparison, 'results.png')}\n")
    print(REAL_DATA_HINT)
    return 0 if all(result.status == "ok" for result in results) else 1
