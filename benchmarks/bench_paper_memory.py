"""Peak memory of one EmbSum-shaped training step of a random-init t5-small at the paper's sizes, on whatever device
is present, beside the estimate the preflight uses (``recbole_embsum/memory.py``).

The step is EmbSum's heavy part with random token ids: the T5 encoder over users x g sessions of 512 tokens and over
users x (1 + K) candidate items, the decoder over a 128-token summary cross-attending to the user's g x 512 fused
session states, and the backward pass. Paper sizes: 128 users, k = 60 items in sessions of p = 4 (g = 15), K = 4.

    python benchmarks/bench_paper_memory.py                          # paper sizes (needs a large GPU)
    python benchmarks/bench_paper_memory.py --users 32 --gradient-checkpointing --bf16   # micro-batch 32 of 4
    python benchmarks/bench_paper_memory.py --quick                  # tiny model and sizes (CI smoke test)

Printed: activations autograd saved (counted by saved-tensor hooks, any device), the CUDA allocator's peak (GPU),
peak RSS growth (CPU), and the estimate for the same settings.
"""
import argparse
import resource
import time

import torch
from transformers import T5Config, T5ForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput

from recbole_embsum import memory

T5_SMALL = memory.T5Sizes(d_model=512, d_ff=2048, d_kv=64, num_heads=8, num_layers=6, num_decoder_layers=6,
                          vocab_size=32128)
TINY = memory.T5Sizes(d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2, num_decoder_layers=1, vocab_size=400)
PAPER = {"users": 128, "sessions": 15, "session_tokens": 512, "candidates": 5, "item_tokens": 128,
         "summary_tokens": 128}
QUICK = {"users": 4, "sessions": 3, "session_tokens": 64, "candidates": 5, "item_tokens": 16, "summary_tokens": 16}


class SavedBytes:
    """Counts the distinct storages autograd saves for backward (``torch.autograd.graph.saved_tensors_hooks``),
    leaving out ``model``'s parameters (saved by every linear layer, but they are not activations)."""

    def __init__(self, model):
        self.parameters = {(p.untyped_storage().data_ptr(), p.device) for p in model.parameters()}
        self.storages = {}

    def pack(self, tensor):
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), tensor.device)
        if key not in self.parameters:
            self.storages[key] = storage.nbytes()
        return tensor

    @staticmethod
    def unpack(tensor):
        return tensor

    @property
    def total(self):
        return sum(self.storages.values())


def build_model(sizes, device, checkpointing):
    config = T5Config(vocab_size=sizes.vocab_size, d_model=sizes.d_model, d_ff=sizes.d_ff, d_kv=sizes.d_kv,
                      num_heads=sizes.num_heads, num_layers=sizes.num_layers,
                      num_decoder_layers=sizes.num_decoder_layers, decoder_start_token_id=0, use_cache=False)
    model = T5ForConditionalGeneration(config).to(device)
    if checkpointing:
        from recbole_embsum.compat import enable_activation_checkpointing

        enable_activation_checkpointing(model)
    model.train()
    return model


def step(model, shapes, device):
    """One forward/backward of the EmbSum-shaped step; returns the loss."""
    vocab = model.config.vocab_size
    sessions = torch.randint(3, vocab, (shapes.users * shapes.sessions, shapes.session_tokens), device=device)
    items = torch.randint(3, vocab, (shapes.users * shapes.candidates, shapes.item_tokens), device=device)
    summaries = torch.randint(3, vocab, (shapes.users, shapes.summary_tokens), device=device)
    states = model.encoder(input_ids=sessions).last_hidden_state  # [B*g, L, d]
    fused = states.reshape(shapes.users, shapes.sessions * shapes.session_tokens, -1)  # [B, g*L, d]
    item_states = model.encoder(input_ids=items).last_hidden_state  # [B*(1+K), L_item, d]
    out = model(encoder_outputs=BaseModelOutput(last_hidden_state=fused), labels=summaries)
    loss = out.loss + item_states[:, 0].pow(2).mean()  # stands in for the NCE loss over candidate [SOS] states
    loss.backward()
    return loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny T5 and sizes (seconds on a CPU)")
    parser.add_argument("--users", type=int, default=None, help="users per micro-batch (default: paper's 128)")
    parser.add_argument("--sessions", type=int, default=None, help="sessions per user g (default 15)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="Hugging Face gradient checkpointing")
    parser.add_argument("--bf16", action="store_true", help="autocast to bfloat16 (CUDA only)")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sizes = TINY if args.quick else T5_SMALL
    values = dict(QUICK if args.quick else PAPER)
    values.update({key: getattr(args, key) for key in ("users", "sessions") if getattr(args, key)})
    shapes = memory.StepShapes(**values)
    amp = args.bf16 and device.type == "cuda"

    model = build_model(sizes, device, args.gradient_checkpointing)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    saved = SavedBytes(model)
    started = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            step(model, shapes, device)
    elapsed = time.perf_counter() - started
    estimate = shapes.activation_bytes(sizes, dtype_bytes=2 if amp else 4, checkpointing=args.gradient_checkpointing)
    gib = memory.GIB if not args.quick else 1024 ** 2
    unit = "GiB" if not args.quick else "MiB"
    print(f"device {device}; T5 d_model={sizes.d_model} layers={sizes.num_layers}+{sizes.num_decoder_layers} "
          f"({sizes.parameters() / 1e6:.1f}M parameters); {shapes}; gradient_checkpointing="
          f"{args.gradient_checkpointing}; {'bf16' if amp else 'fp32'}; step {elapsed:.1f} s")
    print(f"activations saved for backward: {saved.total / gib:.2f} {unit} measured (hooks), "
          f"{estimate / gib:.2f} {unit} estimated (memory.StepShapes.activation_bytes)")
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
        print(f"CUDA peak allocated above the model: {peak / gib:.2f} GiB; with AdamW state "
              f"{(peak + sizes.parameters() * memory.OPTIMIZER_BYTES_PER_PARAMETER) / gib:.2f} GiB")
    else:
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
        print(f"peak RSS growth during the step: {grown / gib:.2f} {unit}")


if __name__ == "__main__":
    main()
