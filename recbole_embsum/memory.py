"""How much memory a training run will need, estimated from the config before anything is loaded.

Two parts, each an estimate (the preflight warns when their sum exceeds the machine):

* **one EmbSum training step** at the configured sizes, taking every user to have a full history: parameters,
  gradients and AdamW state, plus the activations autograd keeps for the backward pass of
  - the T5 encoder over ``train_batch_size x g`` sessions of p item rows (g = k / p sessions; a row is at most
    ``title_max_tokens + abstract_max_tokens`` plus the template's own tokens),
  - the T5 encoder over ``train_batch_size x (1 + train_neg_num)`` candidate items,
  - the T5 decoder over ``summary_max_tokens`` summary tokens cross-attending to the g sessions' token states
    fused session states of its user.
  The per-layer counts follow Hugging Face's T5 blocks (which tensors autograd saves); ``benchmarks/
  bench_paper_memory.py`` measures the same step and prints the estimate beside it. With
  ``gradient_checkpointing`` each T5 block keeps only its input, and one block is recomputed at a time.
* **the loaded data**: per ``.inter`` row, as ``benchmarks/bench_load.py`` measured on a MIND-small-sized dataset:
  0.17 KiB with the history store (``<name>.store/``, histories memory-mapped), 6.3 KiB for a folder in the older
  inline layout (RecBole parses every row's history into numpy objects).

The knobs that bring a step down: ``train_batch_size`` (with ``grad_accum_steps`` keeping the effective batch),
``gradient_checkpointing``, ``enable_amp`` (bf16 on a GPU); the data part only shrinks with less data.
"""
import dataclasses
import os

GIB = 1024 ** 3
DATA_BYTES_PER_ROW = {"store": 0.17 * 1024, "inline": 6.3 * 1024}  # per .inter row (benchmarks/bench_load.py)
TEMPLATE_TOKENS = 20  # per item row besides title and abstract: the template's words, category, [SOS] and </s>
OPTIMIZER_BYTES_PER_PARAMETER = 16  # fp32 weight + gradient + AdamW's two moments


@dataclasses.dataclass(frozen=True)
class T5Sizes:
    d_model: int
    d_ff: int
    d_kv: int
    num_heads: int
    num_layers: int
    num_decoder_layers: int
    vocab_size: int

    @property
    def inner(self):
        return self.num_heads * self.d_kv

    def parameters(self):
        """Parameters of a T5 with these sizes (tied input/output embedding, as T5 v1.0 / t5-small)."""
        d, f, inner = self.d_model, self.d_ff, self.inner
        attention = 4 * d * inner
        encoder_block = attention + 2 * d * f + 2 * d
        decoder_block = 2 * attention + 2 * d * f + 3 * d
        return self.vocab_size * d + self.num_layers * encoder_block + self.num_decoder_layers * decoder_block


def _self_attention_block(tokens, length, sizes, dtype_bytes):
    """Saved bytes of one T5 self-attention + feed-forward block over ``tokens`` tokens in sequences of ``length``.

    Counted with saved-tensor hooks on transformers' T5 (benchmarks/bench_paper_memory.py): per token about 8 d_model
    (layer-norm inputs, outputs and scales, residuals) + 8 inner (q, k, v, attention output and their reshapes) +
    2 d_ff (the FF hidden before and after ReLU); per head and query, 3 floats per key (scores, softmax, dropout).
    """
    d, f, inner, heads = sizes.d_model, sizes.d_ff, sizes.inner, sizes.num_heads
    return tokens * (8 * d + 8 * inner + 2 * f + 3 * heads * length) * dtype_bytes


def _cross_attention(queries, memory, sizes, dtype_bytes):
    """Saved bytes of one decoder cross-attention of one user: ``queries`` decoder tokens over ``memory`` encoder
    tokens (6 d_model per query; k and v of the memory; 3 floats per head, query and key)."""
    d, inner, heads = sizes.d_model, sizes.inner, sizes.num_heads
    return (queries * 6 * d + 2 * memory * inner + 3 * heads * queries * memory) * dtype_bytes


@dataclasses.dataclass(frozen=True)
class StepShapes:
    """The tensors of one EmbSum training step (a micro-batch of ``users`` rows)."""

    users: int
    sessions: int  # g per user
    session_tokens: int  # tokens per session (the packed width)
    candidates: int  # 1 + K per user
    item_tokens: int  # tokens per candidate item
    summary_tokens: int

    def activation_bytes(self, sizes: T5Sizes, dtype_bytes=4, checkpointing=False):
        """Bytes autograd keeps for the backward pass of this step (peak, one step)."""
        encoder_sequences = [(self.users * self.sessions, self.session_tokens),
                             (self.users * self.candidates, self.item_tokens)]
        decoder_tokens = self.users * self.summary_tokens
        memory_tokens = self.sessions * self.session_tokens

        def encoder_block(sequences, length):
            return _self_attention_block(sequences * length, length, sizes, dtype_bytes)

        decoder_block = (_self_attention_block(decoder_tokens, self.summary_tokens, sizes, dtype_bytes)
                         + self.users * _cross_attention(self.summary_tokens, memory_tokens, sizes, dtype_bytes))
        vocab = decoder_tokens * sizes.vocab_size * 4 * 2  # float32 logits and their gradient at the loss
        states = sum(sequences * length for sequences, length in encoder_sequences) * sizes.d_model * dtype_bytes
        if not checkpointing:
            blocks = sum(sizes.num_layers * encoder_block(*shape) for shape in encoder_sequences)
            return blocks + sizes.num_decoder_layers * decoder_block + vocab + states
        # Each block keeps its input; the largest block is recomputed (and kept) during its own backward.
        inputs = (sizes.num_layers * states + sizes.num_decoder_layers * decoder_tokens * sizes.d_model * dtype_bytes)
        largest = max([encoder_block(*shape) for shape in encoder_sequences] + [decoder_block])
        return inputs + largest + vocab + states


def t5_sizes(config, vocab_size=32128):
    """T5 sizes of the run: ``plm_config`` for ``plm_init: scratch``, else the local checkpoint's config.json when
    readable, else t5-small's."""
    fields = {"d_model": 512, "d_ff": 2048, "d_kv": 64, "num_heads": 8, "num_layers": 6, "num_decoder_layers": None}
    if config["plm_init"] == "scratch":
        from recbole_embsum.text.backbone import family_plm_config

        sizes = family_plm_config(config["plm_config"], "t5")
        fields.update({key: value for key, value in sizes.items() if key in fields})
        vocab_size = config["tokenizer_vocab_size"] or vocab_size
    else:
        path = os.path.join(str(config["plm"]), "config.json")
        if os.path.isfile(path):
            import json

            with open(path, encoding="utf-8") as handle:
                saved = json.load(handle)
            fields.update({key: saved[key] for key in fields if saved.get(key) is not None})
            vocab_size = saved.get("vocab_size", vocab_size)
    fields["num_decoder_layers"] = fields["num_decoder_layers"] or fields["num_layers"]
    return T5Sizes(vocab_size=vocab_size, **fields)


def step_shapes(config, users=None):
    """Shapes of one EmbSum training step at the configured sizes, every user with a full k-item history."""
    k = config["MAX_ITEM_LIST_LENGTH"]
    grouping = config["session_grouping"] if config["session_grouping"] is not None else True
    per_session = config["session_size"] if grouping else 1
    item_tokens = config["title_max_tokens"] + config["abstract_max_tokens"] + TEMPLATE_TOKENS
    return StepShapes(users=users or config["train_batch_size"], sessions=-(-k // per_session),
                      session_tokens=per_session * item_tokens, candidates=1 + (config["train_neg_num"] or 1),
                      item_tokens=item_tokens, summary_tokens=config["summary_max_tokens"])


def inter_rows(folder):
    """Rows of every ``.inter`` file in ``folder`` (newline count; header lines included, a negligible excess)."""
    rows = 0
    for entry in os.scandir(folder) if os.path.isdir(folder) else ():
        if entry.name.endswith(".inter"):
            with open(entry.path, "rb") as handle:
                while chunk := handle.read(1 << 24):
                    rows += chunk.count(b"\n")
    return rows


def machine_memory(config):
    """``(bytes, "GPU"/"RAM")`` the step runs in: the GPU's memory when training on CUDA, else physical RAM."""
    import torch

    device = config["device"]
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(torch.device(device)).total_memory, "GPU"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "RAM"


@dataclasses.dataclass
class RunEstimate:
    step_bytes: int  # parameters + optimizer + activations of one micro-batch (0 for models we do not size)
    data_bytes: int
    device_bytes: int
    device_kind: str  # "GPU" or "RAM"
    rows: int
    settings: str  # the knob values the estimate used

    def step_device_bytes(self):
        """What must fit on the training device: the step, plus the data when that device is RAM."""
        return self.step_bytes + (self.data_bytes if self.device_kind == "RAM" else 0)

    def exceeds_device(self):
        return self.step_device_bytes() > self.device_bytes or self.data_bytes > self.ram_bytes()

    @staticmethod
    def ram_bytes():
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")

    def describe(self, data=True):
        """One line: the step (when sized), the loaded data (unless ``data=False``: already said for the same
        dataset) and the machine; ``""`` when there is nothing left to say."""
        parts = [f"one training step ~{self.step_bytes / GIB:.1f} GiB ({self.settings})"] if self.step_bytes else []
        if data:
            parts.append(f"loaded data ~{self.data_bytes / GIB:.1f} GiB ({self.rows:,} rows)")
        if not parts:
            return ""
        return (f"memory estimate: {', '.join(parts)}; "
                f"this machine: {self.device_bytes / GIB:.1f} GiB {self.device_kind}")

    def advice(self):
        return (self.describe() + ". Lower train_batch_size (grad_accum_steps: auto keeps 128 rows, the paper's batch, "
                "per optimizer step), "
                "set gradient_checkpointing=True, or enable_amp=True on a GPU (bf16); see properties/presets/ "
                "(--config_files cpu-small); the data part only shrinks with less data")


def estimate_run(config, embsum=True):
    """The estimate for the run ``config`` describes (``embsum=False``: the data part only)."""
    from dataset_converters.store import store_path

    rows = inter_rows(config["data_path"])
    layout = "store" if os.path.isdir(store_path(config["data_path"], config["dataset"])) else "inline"
    device_bytes, kind = machine_memory(config)
    step_bytes, settings = 0, ""
    if embsum:
        sizes = t5_sizes(config)
        shapes = step_shapes(config)
        amp = bool(config["enable_amp"]) and kind == "GPU"
        checkpointing = bool(config["gradient_checkpointing"])
        step_bytes = (sizes.parameters() * OPTIMIZER_BYTES_PER_PARAMETER
                      + shapes.activation_bytes(sizes, dtype_bytes=2 if amp else 4, checkpointing=checkpointing))
        settings = (f"train_batch_size={shapes.users}, {shapes.sessions} sessions x {shapes.session_tokens} tokens, "
                    f"d_model={sizes.d_model}, gradient_checkpointing={checkpointing}, "
                    f"{'bf16' if amp else 'fp32'}")
    return RunEstimate(step_bytes, int(rows * DATA_BYTES_PER_ROW[layout]), device_bytes, kind, rows, settings)
