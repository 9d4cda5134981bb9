"""Training-step speed of EmbSum against a bare T5 encoder+decoder forward/backward on the same tokens.

The bare step runs exactly the T5 work an EmbSum step cannot avoid: the encoder over every packed history session and
every distinct candidate item of the batch, and the decoder over each user's concatenated session states with the
same summary targets (teacher forcing, LM loss). The ratio EmbSum / bare is the cost of everything EmbSum adds
(session packing, negative sampling, poly-attention, scoring, NCE); the target is <= 1.3.

    python benchmarks/bench_train_step.py [--users 200 --items 300 --batch-size 16 --d-model 64 --layers 2
                                           --steps 5 --device cpu] [--quick]

Data: the synthetic MIND generator (planted topics) converted with the project's converter, plus one template
summary per user, in a temporary folder. Prints samples/s for both steps (median of alternating runs) and the ratio.
"""
import argparse
import itertools
import logging
import os
import statistics
import tempfile
import time

import torch
from transformers.modeling_outputs import BaseModelOutput

from quick import parse_args

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_data(root, users, items):
    """Synthetic MIND converted to atomic files in ``root/data/mind`` with a summary for every user."""
    from dataset_converters.impressions import ConvertOptions
    from dataset_converters.mind import convert_mind
    from dataset_converters.synth import synth_mind
    from recbole_embsum.summaries.store import SOURCES, SummaryAppender, make_record

    raw, data = os.path.join(root, "raw"), os.path.join(root, "data")
    os.makedirs(raw)
    synth_mind(raw, users=users, items=items, seed=0)
    convert_mind(raw, data, ConvertOptions(name="mind"))
    folder = os.path.join(data, "mind")
    with open(os.path.join(folder, "mind.train.inter"), encoding="utf-8") as handle:
        user_ids = sorted({line.split("\t")[1] for line in itertools.islice(handle, 1, None)})
    with SummaryAppender(os.path.join(folder, "mind.summaries.jsonl")) as summaries:  # the summarize tool's writer
        for user in user_ids:
            summary = f"User {user} follows news on several topics and reads long stories about them every week."
            summaries.append(make_record(user, summary, backend="template", model="bench_train_step", prompt_hash="-",
                                         source=SOURCES["train"]))
    return data


def bare_inputs(model, batch, seed):
    """The exact token tensors an EmbSum step seeded with ``seed`` feeds T5 for ``batch`` (same packing; the same
    sampled negatives, as T5 dropout is off so sampling is the step's first use of the RNG)."""
    from recbole_embsum.model.losses import draw_negatives
    from recbole_embsum.model.session import pack_sessions, recent_first

    history = recent_first(batch["item_id_list"], batch["item_length"], model.k)
    packed = pack_sessions(history, model.session_size, model.item_tokens, model.item_token_lengths,
                           model.tokenizer.pad_token_id)
    n_sessions = packed.n_slots // history.size(0)
    slot_of_row = torch.full((packed.n_slots,), packed.owner.numel(), dtype=torch.long)  # default: a zero row
    slot_of_row[packed.owner] = torch.arange(packed.owner.numel())
    used = max(1, -(-int((history != 0).sum(1).max()) // model.session_size))
    memory_rows = slot_of_row.view(-1, n_sessions)[:, :used]  # [B, used] rows of the (zero-extended) states

    torch.manual_seed(seed)
    negatives, _ = draw_negatives(batch["neg_items"], model.train_neg_num)
    candidates = torch.unique(torch.cat([batch["item_id"][:, None], negatives], 1))
    lengths = model.item_token_lengths[candidates]
    cand_tokens = model.item_tokens[candidates][:, : int(lengths.max())]
    cand_mask = torch.arange(cand_tokens.size(1))[None] < lengths[:, None]

    targets = model.summary_tokens[batch["user_id"]]
    target_len = model.summary_lengths[batch["user_id"]]
    steps = max(1, int(target_len.max()))
    labels = targets[:, :steps].masked_fill(torch.arange(steps)[None] >= target_len[:, None], -100)
    return {"sessions": packed.tokens, "session_mask": packed.mask, "memory_rows": memory_rows,
            "candidates": cand_tokens, "candidate_mask": cand_mask, "labels": labels}


def bare_step(t5, inputs):
    """T5 encoder over sessions and candidates, decoder over the fused session states; forward + backward."""
    states = t5.encoder(input_ids=inputs["sessions"], attention_mask=inputs["session_mask"].long()).last_hidden_state
    padded = torch.cat([states, states.new_zeros(1, *states.shape[1:])])
    mask = torch.cat([inputs["session_mask"], inputs["session_mask"].new_zeros(1, states.size(1))])
    rows = inputs["memory_rows"]
    memory = padded[rows].flatten(1, 2)  # [B, used * T, d]
    memory_mask = mask[rows].flatten(1, 2)
    out = t5(encoder_outputs=BaseModelOutput(last_hidden_state=memory), attention_mask=memory_mask.long(),
             labels=inputs["labels"])
    items = t5.encoder(input_ids=inputs["candidates"], attention_mask=inputs["candidate_mask"].long()).last_hidden_state
    (out.loss + items[:, 0].pow(2).mean()).backward()


def interleaved_medians(steps, inputs, warmup):
    """Median seconds per call of each function in ``steps`` (called alternately on the same step's inputs, so load
    drift on a shared machine hits all of them alike), after ``warmup`` untimed rounds."""
    times = [[] for _ in steps]
    for round_index, round_inputs in enumerate(inputs):
        for index, (step, step_input) in enumerate(zip(steps, round_inputs)):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            step(step_input)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if round_index >= warmup:
                times[index].append(time.perf_counter() - start)
    return [statistics.median(values) for values in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--history", type=int, default=20, help="k, latest history items")
    parser.add_argument("--steps", type=int, default=7, help="timed steps of each kind (after 2 warm-up rounds)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parse_args(parser, {"users": 60, "items": 100, "batch_size": 4, "d_model": 32, "layers": 1, "history": 6,
                               "steps": 2}, argv)
    logging.basicConfig(level=logging.WARNING)

    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_embsum.model import EmbSum

    # Importing RecBole's sequential models runs sine.py's global torch.autograd.set_detect_anomaly(True), which
    # NaN-checks every backward op (about 2x slower); measure real training speed.
    torch.autograd.set_detect_anomaly(False)
    with tempfile.TemporaryDirectory() as root:
        data = build_data(root, args.users, args.items)
        heads = max(1, args.d_model // 32)
        config = Config(
            model=EmbSum, dataset="mind",
            config_file_list=[os.path.join(REPO_ROOT, "properties", "model", "EmbSum.yaml"),
                              os.path.join(REPO_ROOT, "properties", "dataset", "mind.yaml")],
            config_dict={"data_path": data, "plm_init": "scratch", "tokenizer_vocab_size": 1000,
                         "plm_config": {"d_model": args.d_model, "d_ff": 4 * args.d_model, "num_layers": args.layers,
                                        "num_decoder_layers": args.layers, "num_heads": heads,
                                        "d_kv": args.d_model // heads, "dropout_rate": 0.0},
                         "MAX_ITEM_LIST_LENGTH": args.history, "train_batch_size": args.batch_size,
                         "device": args.device, "show_progress": False, "state": "WARNING", "metrics": ["AUC"],
                         "valid_metric": "AUC"})
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        train = data_preparation(config, dataset)[0]
        model = EmbSum(config, train._dataset).to(args.device).train()
        batches = [batch.to(args.device) for batch in itertools.islice(train, args.steps + 2)]

        def embsum_step(seeded):
            seed, batch = seeded
            model.zero_grad(set_to_none=True)
            torch.manual_seed(seed)
            sum(model.calculate_loss(batch)).backward()

        bare = [{k: v.to(args.device) for k, v in bare_inputs(model.cpu(), b.cpu(), seed).items()}
                for seed, b in enumerate(batches)]
        model.to(args.device)

        def t5_step(inputs):
            model.zero_grad(set_to_none=True)
            bare_step(model.t5, inputs)

        embsum_s, bare_s = interleaved_medians([embsum_step, t5_step], list(zip(enumerate(batches), bare)), 2)

    samples = args.batch_size
    print(f"device={args.device} d_model={args.d_model} layers={args.layers} batch={samples} k={args.history} "
          f"session_size={model.session_size} steps={args.steps}")
    print(f"EmbSum step:   {embsum_s * 1000:8.1f} ms  {samples / embsum_s:8.1f} samples/s")
    print(f"bare T5 step:  {bare_s * 1000:8.1f} ms  {samples / bare_s:8.1f} samples/s")
    print(f"ratio EmbSum / bare T5: {embsum_s / bare_s:.3f} (target <= 1.3)")


if __name__ == "__main__":
    main()
