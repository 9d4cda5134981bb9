"""Pretrained language models (PLMs) of the content models and their tokenizers: EmbSum's T5 and the PLM baselines'
encoders (RoBERTa, BERT) and encoder-decoders (BART), loaded one way.

Two ways to get a model, chosen by ``plm_init``:

* ``pretrained`` (default): ``plm`` is a Hugging Face name or local folder (``t5-small`` for EmbSum, ``roberta-base`` /
  ``bert-base-uncased`` / ``facebook/bart-base`` for the baselines), loaded with ``AutoTokenizer`` and
  ``from_pretrained``.
* ``scratch`` (offline, no download): the same architecture built from ``plm_config`` (fields of the family's
  ``PretrainedConfig``; ``model_type`` names the family, else it is read from the ``plm`` name as ``AutoConfig``
  does) with random weights, and a tokenizer of the family's scheme (T5: Unigram with ``<pad> </s> <unk>``; BERT:
  WordPiece with ``[PAD] [UNK] [CLS] [SEP] [MASK]``; RoBERTa and BART: byte-level BPE with ``<s> <pad> </s> <unk>
  <mask>``) trained with the ``tokenizers`` library on the dataset's text and cached in
  ``<data_path>/<dataset>.tokenizer/<key>/`` so it is trained once. The key covers everything the tokenizer depends
  on (``tokenizer_vocab_size``, a hash of the training text, the ``tokenizers`` version, the tokenizer model and the
  special-token scheme), so two configurations, two families, or a dataset re-converted with other text, never read
  each other's tokenizer. Model code uses ``cls_token_id`` / ``sep_token_id`` / ``pad_token_id`` alike for both.

Retraining does not reproduce a scratch tokenizer: the ``tokenizers`` WordPiece trainer (BERT) gives another vocabulary
on every run (in separate processes too; ``RAYON_NUM_THREADS=1`` does not change it), the Unigram trainer (T5) the
same pieces with scores that differ in the last bits, byte-level BPE the same file. So a tokenizer is trained once and
read from its cache folder after that, and a checkpoint carries the tokenizer its weights were trained with
(:func:`scratch_tokenizer_record`); loading the checkpoint restores it into the cache and pins it with the
``scratch_tokenizer`` option, so the model gets its own tokenizer back even after the dataset's text has changed.

EmbSum's T5 (:func:`load_backbone`) also gains the ``[SOS]`` item-start token (Section 2.3); the baselines use
:func:`load_plm`.
"""
import hashlib
import json
import logging
import os
import shutil
import tempfile
from typing import Callable, Iterable, NamedTuple, Optional, Tuple

import tokenizers
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (CONFIG_MAPPING, AddedToken, AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer,
                          PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration)

from .items import ITEM_START_TOKEN

logger = logging.getLogger(__name__)

PLM_INIT_CHOICES = ("pretrained", "scratch")
PLM_KINDS = {"encoder": AutoModel, "seq2seq": AutoModelForSeq2SeqLM}  # load_plm's kind -> Auto class
TOKENIZER_META = "embsum_tokenizer.json"


class TokenizerScheme(NamedTuple):
    """How a family's scratch tokenizer is built: the ``tokenizers`` model, its special tokens (in id order) and
    their roles in ``PreTrainedTokenizerFast``."""

    name: str
    model: str  # unigram | wordpiece | bpe
    special_tokens: Tuple[str, ...]
    roles: Tuple[Tuple[str, str], ...]  # (PreTrainedTokenizerFast keyword, token)


T5_SCHEME = TokenizerScheme("t5", "unigram", ("<pad>", "</s>", "<unk>", ITEM_START_TOKEN),  # ids 0-2 as in T5
                            (("pad_token", "<pad>"), ("eos_token", "</s>"), ("unk_token", "<unk>")))
BERT_SCHEME = TokenizerScheme("bert", "wordpiece", ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"),
                              (("pad_token", "[PAD]"), ("unk_token", "[UNK]"), ("cls_token", "[CLS]"),
                               ("sep_token", "[SEP]"), ("mask_token", "[MASK]")))
ROBERTA_SCHEME = TokenizerScheme("roberta", "bpe", ("<s>", "<pad>", "</s>", "<unk>", "<mask>"),  # ids as roberta-base
                                 (("bos_token", "<s>"), ("eos_token", "</s>"), ("cls_token", "<s>"),
                                  ("sep_token", "</s>"), ("pad_token", "<pad>"), ("unk_token", "<unk>"),
                                  ("mask_token", "<mask>")))
# model_type (transformers) -> the scheme of its scratch tokenizer; RoBERTa and BART share GPT-2's byte-level BPE
SCRATCH_SCHEMES = {"t5": T5_SCHEME, "bert": BERT_SCHEME, "distilbert": BERT_SCHEME, "roberta": ROBERTA_SCHEME,
                   "bart": ROBERTA_SCHEME}
TOKENIZER_MODEL = T5_SCHEME.model  # EmbSum's scratch tokenizer model


def tokenizer_cache_dir(data_path: str, dataset: str) -> str:
    """``<data_path>/<dataset>.tokenizer``, the folder of all cached scratch tokenizers of a dataset (``data_path``
    is RecBole's per-dataset folder)."""
    return os.path.join(data_path, f"{dataset}.tokenizer")


def _bare_tokenizer(scheme: TokenizerScheme, vocab_size: int):
    """An untrained ``tokenizers.Tokenizer`` of ``scheme`` and its trainer."""
    specials = list(scheme.special_tokens)
    if scheme.model == "unigram":  # T5: NFKC + Metaspace (SentencePiece-style)
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.normalizer = normalizers.NFKC()
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        return tokenizer, trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>",
                                                  show_progress=False)
    if scheme.model == "wordpiece":  # BERT uncased: lower-casing normalizer, ## continuation pieces
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        return tokenizer, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                    show_progress=False)
    tokenizer = Tokenizer(models.BPE())  # RoBERTa / BART: byte-level BPE, every byte in the base alphabet
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet())


def _post_processor(scheme: TokenizerScheme, tokenizer: Tokenizer):
    """The family's special tokens around a text (pair): BERT ``[CLS] a [SEP] b [SEP]``, RoBERTa/BART ``<s> a </s></s>
    b </s>``; T5 none (EmbSum adds its own)."""
    if scheme is BERT_SCHEME:
        return processors.BertProcessing(("[SEP]", tokenizer.token_to_id("[SEP]")),
                                         ("[CLS]", tokenizer.token_to_id("[CLS]")))
    if scheme is ROBERTA_SCHEME:
        return processors.RobertaProcessing(("</s>", tokenizer.token_to_id("</s>")),
                                            ("<s>", tokenizer.token_to_id("<s>")), add_prefix_space=False)
    return None


def train_tokenizer(corpus: Iterable[str], vocab_size: int,
                    scheme: TokenizerScheme = T5_SCHEME) -> PreTrainedTokenizerFast:
    """Train a tokenizer of ``scheme`` (default: T5's Unigram, with ``[SOS]``) on ``corpus``, wrapped for
    transformers."""
    tokenizer, trainer = _bare_tokenizer(scheme, vocab_size)
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    post_processor = _post_processor(scheme, tokenizer)
    if post_processor is not None:
        tokenizer.post_processor = post_processor
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **dict(scheme.roles))
    if scheme is T5_SCHEME:
        add_item_start_token(wrapped)
    return wrapped


def tokenizer_cache_key(corpus: Iterable[str], vocab_size: int, scheme: TokenizerScheme = T5_SCHEME) -> dict:
    """The parts a scratch tokenizer depends on: ``tokenizer_vocab_size``, the SHA-256 of the training text (streamed,
    one text after another), the ``tokenizers`` version, the tokenizer model and the special-token scheme."""
    digest = hashlib.sha256()
    for text in corpus:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")  # separator: ["ab", "c"] and ["a", "bc"] differ
    return {"tokenizer_vocab_size": vocab_size, "corpus_sha256": digest.hexdigest(),
            "tokenizers_version": tokenizers.__version__, "model": scheme.model, "special_tokens": scheme.name}


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


def load_or_train_tokenizer(data_path: str, dataset: str, corpus: Callable[[], Iterable[str]], vocab_size: int,
                            scheme: TokenizerScheme = T5_SCHEME, pinned: Optional[str] = None) -> PreTrainedTokenizerFast:
    """Load the tokenizer cached for this corpus, vocabulary size and scheme, or train one on ``corpus()`` and write
    it to its keyed folder atomically (the key's parts go to its ``embsum_tokenizer.json``).

    ``corpus`` is called once to hash the text and, on a cache miss, once more to train on it. ``pinned`` (the
    ``scratch_tokenizer`` option: a folder name under ``<dataset>.tokenizer/``) loads that cached tokenizer instead,
    whatever the text is now: the one a checkpoint was trained with.
    """
    if pinned:
        return _pinned_tokenizer(data_path, dataset, pinned, vocab_size, scheme)
    key = tokenizer_cache_key(corpus(), vocab_size, scheme)
    folder = tokenizer_cache_path(data_path, dataset, key)
    if _read_key(folder) != key:  # absent, or written by something else: train a fresh one
        logger.info("Training a %d-token %s tokenizer (%s special tokens) into %s", vocab_size, scheme.model,
                    scheme.name, folder)
        tokenizer = train_tokenizer(corpus(), vocab_size, scheme)
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
    return AutoTokenizer.from_pretrained(folder)


def _pinned_tokenizer(data_path: str, dataset: str, name: str, vocab_size: int, scheme: TokenizerScheme):
    folder = os.path.join(tokenizer_cache_dir(data_path, dataset), os.path.basename(name))
    key = _read_key(folder)
    if key is None:
        raise FileNotFoundError(f"scratch_tokenizer={name!r}: no cached tokenizer {folder}; pass the checkpoint it came "
                                f"from to load or --resume (they restore it), or unset scratch_tokenizer to train one")
    if (key.get("tokenizer_vocab_size"), key.get("model"), key.get("special_tokens")) != (vocab_size, scheme.model,
                                                                                          scheme.name):
        raise ValueError(f"scratch_tokenizer={name!r} is a {key.get('tokenizer_vocab_size')}-token {key.get('model')} "
                         f"tokenizer, this model needs {vocab_size}-token {scheme.model} ({scheme.name}); unset "
                         f"scratch_tokenizer or set tokenizer_vocab_size / plm to the checkpoint's")
    logger.info("Using the scratch tokenizer %s (scratch_tokenizer)", folder)
    return AutoTokenizer.from_pretrained(folder)


# The files of a cached scratch tokenizer folder that a checkpoint carries (all text).
TOKENIZER_FILES = (TOKENIZER_META, "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json")


def scratch_tokenizer_record(tokenizer) -> Optional[dict]:
    """The cached scratch tokenizer ``tokenizer`` was loaded from, as plain data for a checkpoint: ``{"name": folder
    name, "key": its key, "files": {file name: text}}``; None for a pretrained tokenizer (it is named by ``plm``)."""
    folder = getattr(tokenizer, "name_or_path", None)
    key = _read_key(folder) if folder and os.path.isdir(folder) else None
    if key is None:
        return None
    files = {}
    for name in TOKENIZER_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                files[name] = handle.read()
    return {"name": os.path.basename(os.path.normpath(folder)), "key": key, "files": files}


def restore_scratch_tokenizer(data_path: str, dataset: str, record: dict) -> str:
    """Write a checkpoint's scratch tokenizer (:func:`scratch_tokenizer_record`) into the dataset's tokenizer cache
    unless it is there already; returns its folder name, the value for ``scratch_tokenizer``."""
    key, files = record.get("key"), record.get("files")
    if not isinstance(key, dict) or not isinstance(files, dict) or set(files) - set(TOKENIZER_FILES) or \
            not all(isinstance(text, str) for text in files.values()):
        raise ValueError("the checkpoint's scratch tokenizer is not a tokenizer record (retrain)")
    folder = tokenizer_cache_path(data_path, dataset, key)  # the name follows from the key, not from the record
    if _read_key(folder) != key:
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        tmp = tempfile.mkdtemp(dir=os.path.dirname(folder), prefix=f".{os.path.basename(folder)}.")
        for name, text in {**files, TOKENIZER_META: json.dumps(key, indent=1, sort_keys=True)}.items():
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as handle:
                handle.write(text)
        if os.path.isdir(folder):
            shutil.rmtree(folder, ignore_errors=True)  # a folder with a foreign key under our name
        try:
            os.replace(tmp, folder)
        except OSError:  # another process restored it first
            shutil.rmtree(tmp, ignore_errors=True)
        logger.info("Restored the checkpoint's scratch tokenizer into %s", folder)
    return os.path.basename(folder)


def add_item_start_token(tokenizer) -> int:
    """Make sure ``[SOS]`` is a special token of ``tokenizer``; return its id."""
    if ITEM_START_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([AddedToken(ITEM_START_TOKEN, special=True, normalized=False)], special_tokens=True)
    return tokenizer.convert_tokens_to_ids(ITEM_START_TOKEN)


def build_scratch_t5(tokenizer, plm_config: dict) -> T5ForConditionalGeneration:
    """A randomly initialised T5 of the sizes in ``plm_config`` (T5Config fields) for ``tokenizer``."""
    config = T5Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id,
                      **_checked_sizes(T5Config(), plm_config))
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


def plm_model_type(config) -> str:
    """The transformers ``model_type`` of a scratch PLM: ``plm_config.model_type`` when given, else the longest
    known model type in the ``plm`` name (``roberta-base`` -> roberta, ``facebook/bart-base`` -> bart), as
    ``AutoConfig`` falls back to for a name without a config."""
    given = (config["plm_config"] or {}).get("model_type")  # flat fields only; per-family entries name no model_type
    if given:
        if given not in CONFIG_MAPPING:
            raise ValueError(f"plm_config.model_type {given!r} is not a transformers model type (e.g. roberta, bert, "
                             f"bart, t5)")
        return given
    name = os.path.basename(str(config["plm"] or "").rstrip("/")).lower()
    matches = [model_type for model_type in CONFIG_MAPPING.keys() if model_type in name]
    if not matches:
        raise ValueError(f"plm_init: scratch cannot tell the model family from plm={config['plm']!r}; set "
                         f"plm_config.model_type (one of {', '.join(sorted(SCRATCH_SCHEMES))})")
    return max(matches, key=len)


def family_plm_config(plm_config: Optional[dict], model_type: str) -> dict:
    """The ``plm_config`` fields for a ``model_type`` backbone.

    ``plm_config`` is either the fields themselves (``{hidden_size: 64, ...}``) or, so that one file (a preset) serves
    every model whatever its backbone family, a mapping from transformers model types to fields
    (``{t5: {d_model: 64, ...}, roberta: {hidden_size: 64, ...}}``), of which the ``model_type`` entry is used.
    """
    plm_config = dict(plm_config or {})
    families = [key for key, value in plm_config.items() if key in CONFIG_MAPPING and isinstance(value, dict)]
    if not families:
        return plm_config
    if len(families) != len(plm_config):
        fields = sorted(set(plm_config) - set(families))
        raise ValueError(f"plm_config mixes per-family entries ({', '.join(families)}) with fields "
                         f"({', '.join(fields)}); give either fields or one entry per model type")
    if model_type not in plm_config:
        raise ValueError(f"plm_config has sizes for {', '.join(families)} but this model's backbone is {model_type!r}; "
                         f"add a `{model_type}:` entry with its fields, or set plm_init: pretrained")
    return dict(plm_config[model_type])


def _checked_sizes(defaults, plm_config: Optional[dict]) -> dict:
    """``plm_config`` without ``model_type``, refusing a field the family's config does not have (a T5 ``d_model``
    given to RoBERTa would otherwise be stored and ignored, leaving the default sizes)."""
    sizes = {key: value for key, value in (plm_config or {}).items() if key != "model_type"}
    unknown = sorted(key for key in sizes if not hasattr(defaults, key))
    if unknown:
        raise ValueError(f"plm_config: {', '.join(unknown)} not a field of {type(defaults).__name__} "
                         f"(model_type {defaults.model_type}); use that config's field names, e.g. hidden_size, "
                         f"num_hidden_layers for roberta/bert, d_model for bart/t5")
    return sizes


def build_scratch_plm(model_type: str, tokenizer, plm_config: Optional[dict], kind: str = "encoder"):
    """A randomly initialised ``model_type`` model (``PLM_KINDS[kind]`` head) of ``plm_config`` sizes whose
    vocabulary and special-token ids are ``tokenizer``'s."""
    specials = {f"{role}_id": getattr(tokenizer, f"{role}_id") for role in ("pad_token", "bos_token", "eos_token")
                if getattr(tokenizer, f"{role}_id", None) is not None}
    if model_type in ("bart", "t5"):  # their decoders start from </s> (BART) / <pad> (T5), as the released checkpoints
        start = tokenizer.eos_token_id if model_type == "bart" else tokenizer.pad_token_id
        specials["decoder_start_token_id"] = start
    sizes = _checked_sizes(AutoConfig.for_model(model_type), plm_config)
    plm_config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), **specials, **sizes)
    return PLM_KINDS[kind].from_config(plm_config)


def _pretrained_tokenizer(plm: str):
    """``AutoTokenizer.from_pretrained(plm)``, fast, or one line saying what to do."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(plm)
    except (OSError, ValueError) as error:  # no network, a typo, or a folder without a tokenizer
        raise OSError(
            f"plm={plm!r} could not be loaded ({type(error).__name__}: {error}). Give a Hugging Face name with "
            f"network access, a local folder written by save_pretrained, or set plm_init: scratch to train a model "
            f"of plm_config size offline."
        ) from error
    if not tokenizer.is_fast:
        raise ValueError(f"plm={plm!r}: the item text store needs a fast tokenizer (character offsets for the token caps)")
    return tokenizer


def _check_plm_init(plm_init) -> None:
    if plm_init not in PLM_INIT_CHOICES:
        raise ValueError(f"plm_init must be one of {PLM_INIT_CHOICES}, got {plm_init!r}")


def _maybe_checkpoint(model, config) -> None:
    if config["gradient_checkpointing"]:
        # Hugging Face activation checkpointing of every block: a block keeps only its input and is recomputed in the
        # backward pass, trading ~30% more compute for most of the activation memory.
        from recbole_embsum.compat import enable_activation_checkpointing

        enable_activation_checkpointing(model)


def _pinned_option(config) -> Optional[str]:
    """The ``scratch_tokenizer`` option (absent from configs made by hand: None)."""
    return config["scratch_tokenizer"] if "scratch_tokenizer" in config else None


def load_plm(config, corpus: Callable[[], Iterable[str]], kind: str = "encoder"):
    """Return ``(model, tokenizer)`` of any Hugging Face PLM family, as configured by ``plm_init``, ``plm``,
    ``plm_config``, ``tokenizer_vocab_size`` and ``gradient_checkpointing``.

    Args:
        config: the RecBole Config.
        corpus: called (only for a scratch tokenizer) to get the training text, to hash it and, if no tokenizer is
            cached for it, to train one.
        kind: ``encoder`` (``AutoModel``: RoBERTa, BERT) or ``seq2seq`` (``AutoModelForSeq2SeqLM``: BART, T5).
    """
    if kind not in PLM_KINDS:
        raise ValueError(f"load_plm: kind must be one of {sorted(PLM_KINDS)}, got {kind!r}")
    plm_init = config["plm_init"]
    _check_plm_init(plm_init)
    if plm_init == "pretrained":
        tokenizer = _pretrained_tokenizer(config["plm"])
        model = PLM_KINDS[kind].from_pretrained(config["plm"])
    else:
        model_type = plm_model_type(config)
        if model_type not in SCRATCH_SCHEMES:
            raise ValueError(f"plm_init: scratch builds tokenizers for {', '.join(sorted(SCRATCH_SCHEMES))}, not "
                             f"{model_type!r}; set plm_config.model_type to one of them or use plm_init: pretrained")
        tokenizer = load_or_train_tokenizer(config["data_path"], config["dataset"], corpus,
                                            config["tokenizer_vocab_size"], SCRATCH_SCHEMES[model_type],
                                            _pinned_option(config))
        model = build_scratch_plm(model_type, tokenizer, family_plm_config(config["plm_config"], model_type), kind)
    _maybe_checkpoint(model, config)
    return model, tokenizer


def load_backbone(config, corpus: Callable[[], Iterable[str]]) -> Tuple[T5ForConditionalGeneration, object]:
    """EmbSum's T5: ``(t5, tokenizer)`` as :func:`load_plm` loads a model, with the ``[SOS]`` token added (and the
    embedding matrix grown for it when a pretrained vocabulary lacks it); ``plm_config`` holds T5Config fields (or a
    ``t5:`` entry of them, see :func:`family_plm_config`)."""
    plm_init = config["plm_init"]
    _check_plm_init(plm_init)
    if plm_init == "pretrained":
        tokenizer = _pretrained_tokenizer(config["plm"])
        add_item_start_token(tokenizer)
        t5 = T5ForConditionalGeneration.from_pretrained(config["plm"])
        if len(tokenizer) > t5.get_input_embeddings().num_embeddings:
            t5.resize_token_embeddings(len(tokenizer))
    else:
        tokenizer = load_or_train_tokenizer(config["data_path"], config["dataset"], corpus,
                                            config["tokenizer_vocab_size"], T5_SCHEME, _pinned_option(config))
        add_item_start_token(tokenizer)
        t5 = build_scratch_t5(tokenizer, family_plm_config(config["plm_config"], "t5"))
    _maybe_checkpoint(t5, config)
    return t5, tokenizer
