"""The T5 encoder-decoder backbone of the content models (EmbSum first) and its tokenizer.

Two ways to get them, chosen by ``plm_init``:

* ``pretrained`` (default): ``plm`` is a Hugging Face encoder-decoder name or local path (``t5-small`` in the paper),
  loaded with ``AutoTokenizer`` / ``T5ForConditionalGeneration.from_pretrained``.
* ``scratch`` (offline, no download): a T5 built from ``plm_config`` (any ``T5Config`` field; t5-small sizes by
  default) with a Unigram tokenizer (SentencePiece-style, like T5's own) trained with the ``tokenizers`` library on
  the dataset's text and cached in ``<data_path>/<dataset>.tokenizer/<key>/`` so it is trained once. The key covers
  everything the tokenizer depends on (``tokenizer_vocab_size``, a hash of the training text, the ``tokenizers``
  version and the tokenizer model), so two configurations, or a dataset re-converted with other text, never read
  each other's tokenizer.

Either way the tokenizer gains the ``[SOS]`` item-start token (Section 2.3).
"""
import hashlib
import json
import logging
import os
import shutil
import tempfile
from typing import Callable, Iterable, Tuple

import tokenizers
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AddedToken, AutoTokenizer, PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

from .items import ITEM_START_TOKEN

logger = logging.getLogger(__name__)

PLM_INIT_CHOICES = ("pretrained", "scratch")
TOKENIZER_META = "embsum_tokenizer.json"
TOKENIZER_MODEL = "unigram"
_SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>", ITEM_START_TOKEN]  # ids 0, 1, 2 as in T5; then [SOS]


def tokenizer_cache_dir(data_path: str, dataset: str) -> str:
    """``<data_path>/<dataset>.tokenizer``, the folder of all cached scratch tokenizers of a dataset (``data_path``
    is RecBole's per-dataset folder)."""
    return os.path.join(data_path, f"{dataset}.tokenizer")


def train_tokenizer(corpus: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a Unigram tokenizer (NFKC + Metaspace, T5's scheme) on ``corpus``, wrapped for transformers."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=_SPECIAL_TOKENS, unk_token="<unk>",
                                      show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>",
                                      unk_token="<unk>")
    add_item_start_token(wrapped)
    return wrapped


def tokenizer_cache_key(corpus: Iterable[str], vocab_size: int) -> dict:
    """The parts a scratch tokenizer depends on: ``tokenizer_vocab_size``, the SHA-256 of the training text (streamed,
    one text after another), the ``tokenizers`` version and the tokenizer model."""
    digest = hashlib.sha256()
    for text in corpus:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")  # separator: ["ab", "c"] and ["a", "bc"] differ
    return {"tokenizer_vocab_size": vocab_size, "corpus_sha256": digest.hexdigest(),
            "tokenizers_version": tokenizers.__version__, "model": TOKENIZER_MODEL}


def tokenizer_cache_path(data_path: str, dataset: str, key: dict) -> str:
    """``<data_path>/<dataset>.tokenizer/<first 16 hex digits of the key's hash>``: the folder of the tokenizer for
    ``key`` (from :func:`tokenizer_cache_key`)."""
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    return os.path.join(tokenizer_cache_dir(data_path, dataset), name)


def _read_key(folder: str):
    try:
        with open(os.path.join(folder, TOKENIZER_META), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def load_or_train_tokenizer(data_path: str, dataset: str, corpus: Callable[[], Iterable[str]],
                            vocab_size: int) -> PreTrainedTokenizerFast:
    """Load the tokenizer cached for this corpus and vocabulary size, or train one on ``corpus()`` and write it to
    its keyed folder atomically (the key's parts go to its ``embsum_tokenizer.json``).

    ``corpus`` is called once to hash the text and, on a cache miss, once more to train on it.
    """
    key = tokenizer_cache_key(corpus(), vocab_size)
    folder = tokenizer_cache_path(data_path, dataset, key)
    if _read_key(folder) != key:  # absent, or written by something else: train a fresh one
        logger.info("Training a %d-token Unigram tokenizer into %s", vocab_size, folder)
        tokenizer = train_tokenizer(corpus(), vocab_size)
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        tmp = tempfile.mkdtemp(dir=os.path.dirname(folder), prefix=f".{os.path.basename(folder)}.")
        tokenizer.save_pretrained(tmp)
        with open(os.path.join(tmp, TOKENIZER_META), "w", encoding="utf-8") as handle:
            json.dump(key, handle, indent=1, sort_keys=True)
        if os.path.isdir(folder) and _read_key(folder) != key:
            shutil.rmtree(folder, ignore_errors=True)  # a folder with a foreign key under our name
        try:
            os.replace(tmp, folder)
        except OSError:  # another process wrote the same key first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    add_item_start_token(tokenizer)
    return tokenizer


def add_item_start_token(tokenizer) -> int:
    """Make sure ``[SOS]`` is a special token of ``tokenizer``; return its id."""
    if ITEM_START_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([AddedToken(ITEM_START_TOKEN, special=True, normalized=False)], special_tokens=True)
    return tokenizer.convert_tokens_to_ids(ITEM_START_TOKEN)


def build_scratch_t5(tokenizer, plm_config: dict) -> T5ForConditionalGeneration:
    """A randomly initialised T5 of the sizes in ``plm_config`` (T5Config fields) for ``tokenizer``."""
    config = T5Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id,
                      **(plm_config or {}))
    return T5ForConditionalGeneration(config)


def decoder_logits(t5: T5ForConditionalGeneration, states: torch.Tensor) -> torch.Tensor:
    """LM-head logits [..., V] of final decoder states [..., d], as ``T5ForConditionalGeneration.forward`` computes
    them, for callers that run ``t5.decoder`` themselves to keep its last hidden state.

    T5 with tied embeddings scales the states by d_model^-0.5 first: transformers >= 5 records this as
    ``config.scale_decoder_outputs``, older versions as ``config.tie_word_embeddings``.
    """
    scale = getattr(t5.config, "scale_decoder_outputs", None)
    if scale is None:
        scale = t5.config.tie_word_embeddings
    if scale:
        states = states * t5.model_dim**-0.5
    return t5.lm_head(states)


def load_backbone(config, corpus: Callable[[], Iterable[str]]) -> Tuple[T5ForConditionalGeneration, object]:
    """Return ``(t5, tokenizer)`` as configured by ``plm_init``, ``plm``, ``plm_config``, ``tokenizer_vocab_size`` and
    ``gradient_checkpointing``.

    Args:
        config: the RecBole Config.
        corpus: called (only for a scratch tokenizer) to get the training text, to hash it and, if no tokenizer is
            cached for it, to train one.
    """
    plm_init = config["plm_init"]
    if plm_init == "pretrained":
        try:
            tokenizer = AutoTokenizer.from_pretrained(config["plm"])
        except (OSError, ValueError) as error:  # no network, a typo, or a folder without a tokenizer
            raise OSError(
                f"plm={config['plm']!r} could not be loaded ({type(error).__name__}: {error}). Give a Hugging Face "
                f"name with network access, a local folder written by save_pretrained, or set plm_init: scratch "
                f"to train a T5 of plm_config size offline."
            ) from error
        if not tokenizer.is_fast:
            raise ValueError(f"plm={config['plm']!r}: the item text store needs a fast tokenizer (character offsets for the token caps)")
        add_item_start_token(tokenizer)
        t5 = T5ForConditionalGeneration.from_pretrained(config["plm"])
        if len(tokenizer) > t5.get_input_embeddings().num_embeddings:
            t5.resize_token_embeddings(len(tokenizer))
    elif plm_init == "scratch":
        tokenizer = load_or_train_tokenizer(config["data_path"], config["dataset"], corpus,
                                            config["tokenizer_vocab_size"])
        t5 = build_scratch_t5(tokenizer, config["plm_config"])
    else:
        raise ValueError(f"plm_init must be one of {PLM_INIT_CHOICES}, got {plm_init!r}")
    if config["gradient_checkpointing"]:
        # Hugging Face activation checkpointing of every T5 block (encoder and decoder): a block keeps only its input
        # and is recomputed in the backward pass, trading ~30% more compute for most of the activation memory.
        from recbole_embsum.compat import enable_activation_checkpointing

        enable_activation_checkpointing(t5)
    return t5, tokenizer
