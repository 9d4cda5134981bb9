"""Word vocabulary and word vectors for the content baselines trained from scratch (NAML, NRMS, Fastformer, CAUM,
MINS).

* **Tokenizer.** A Hugging Face ``tokenizers`` WordLevel model (normaliser: NFKC, optionally lower-case;
  pre-tokeniser: ``Whitespace``, i.e. runs of word characters and runs of punctuation) trained on the item text.
  Id 0 is ``[PAD]``, id 1 ``[UNK]``. It is cached beside the data as ``<dataset>.words-<key>.json``, where the key
  hashes the corpus and the settings, so a changed text or setting trains a new one and never reuses a stale one.
* **Vectors.** Random by default. ``word_embeddings: /path/glove.840B.300d.txt`` streams GloVe's text format
  (``word v_1 ... v_d`` per line; a word may itself contain spaces, as in glove.840B) and keeps the vectors of
  vocabulary words; words it lacks keep their random vector and are counted and logged. A ``.npy`` file is taken as a
  ready ``[vocab_size, dim]`` matrix whose row i is word id i of the cached tokenizer (e.g. a saved matrix).
"""
import hashlib
import json
import logging
import os
import tempfile
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

logger = logging.getLogger(__name__)

PAD_TOKEN, UNK_TOKEN = "[PAD]", "[UNK]"
PAD_ID = 0


def _normalizer(lowercase: bool):
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    return normalizers.Sequence(steps)


def train_word_tokenizer(corpus: Iterable[str], vocab_size: int, min_frequency: int, lowercase: bool) -> Tokenizer:
    """A WordLevel tokenizer of at most ``vocab_size`` words (the most frequent with ``min_frequency`` or more)."""
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK_TOKEN))
    tokenizer.normalizer = _normalizer(lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=[PAD_TOKEN, UNK_TOKEN], show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return tokenizer


def tokenizer_key(corpus: Sequence[str], vocab_size: int, min_frequency: int, lowercase: bool) -> str:
    """A short hash of the corpus and the settings that name a cached tokenizer."""
    digest = hashlib.sha256(json.dumps([vocab_size, min_frequency, lowercase]).encode())
    for text in corpus:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _write_atomically(path: str, write) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    handle, temp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(handle)
    try:
        write(temp)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def load_or_train_word_tokenizer(cache_prefix: str, corpus: Sequence[str], vocab_size: int, min_frequency: int,
                                 lowercase: bool) -> Tokenizer:
    """The tokenizer cached at ``<cache_prefix>.words-<key>.json``, trained on ``corpus`` and written atomically the
    first time."""
    path = f"{cache_prefix}.words-{tokenizer_key(corpus, vocab_size, min_frequency, lowercase)}.json"
    if not os.path.exists(path):
        logger.info("Training a word-level tokenizer (at most %d words) on %d texts -> %s", vocab_size, len(corpus),
                    path)
        tokenizer = train_word_tokenizer(corpus, vocab_size, min_frequency, lowercase)
        _write_atomically(path, tokenizer.save)
    return Tokenizer.from_file(path)


def encode_words(tokenizer: Tokenizer, texts: Sequence[str], max_words: int) -> torch.Tensor:
    """Word ids of ``texts``, cut to ``max_words`` and 0-padded: [N, max_words]."""
    tokenizer = Tokenizer.from_str(tokenizer.to_str())  # a copy: truncation/padding settings stay local
    tokenizer.enable_truncation(max_length=max_words)
    tokenizer.enable_padding(pad_id=PAD_ID, pad_token=PAD_TOKEN, length=max_words)
    return torch.tensor([encoding.ids for encoding in tokenizer.encode_batch(list(texts))], dtype=torch.long)


def _parse_vector_line(path: str, line_no: int, line: str, dim: Optional[int]) -> Tuple[str, np.ndarray]:
    parts = line.rstrip("\n").rstrip(" ").split(" ")
    if dim is None:  # the first line fixes the width: everything after the first field that parses as numbers
        dim = len(parts) - 1
    if len(parts) < dim + 1:
        raise ValueError(f"{path}:{line_no}: expected a word and {dim} numbers, got {len(parts)} fields")
    try:
        vector = np.asarray(parts[-dim:], dtype=np.float32)
    except ValueError:
        raise ValueError(f"{path}:{line_no}: the last {dim} fields are not all numbers (GloVe text format: "
                         f"'word v_1 ... v_{dim}')") from None
    return " ".join(parts[:-dim]), vector


def load_word_vectors(path: str, vocab: dict, weight: torch.Tensor) -> Tuple[int, int]:
    """Copy pretrained vectors into ``weight`` [vocab_size, dim] in place (rows of words found; others untouched).

    Args:
        path: GloVe text file (streamed) or ``.npy`` matrix aligned with ``vocab``.
        vocab: word -> id (the tokenizer's vocabulary, special tokens included).

    Returns:
        (words found, words missing), counting the vocabulary without ``[PAD]``/``[UNK]``.

    Raises:
        FileNotFoundError, ValueError: naming the file (and line) and what is wrong.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"word_embeddings: {path} does not exist (give a GloVe .txt file or a .npy matrix)")
    vocab_size, dim = weight.shape
    words = {word: index for word, index in vocab.items() if word not in (PAD_TOKEN, UNK_TOKEN)}
    if path.endswith(".npy"):
        matrix = np.load(path)
        if matrix.shape != (vocab_size, dim):
            raise ValueError(f"word_embeddings: {path} has shape {matrix.shape}, the word vocabulary needs "
                             f"({vocab_size}, {dim}) (row i = word id i; set word_embedding_size to its width)")
        weight.copy_(torch.from_numpy(matrix))
        return len(words), 0
    found = set()
    file_dim = None
    with open(path, encoding="utf-8", errors="strict") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            word, vector = _parse_vector_line(path, line_no, line, file_dim)
            if file_dim is None:
                file_dim = vector.shape[0]
                if file_dim != dim:
                    raise ValueError(f"word_embeddings: {path} holds {file_dim}-d vectors, the model uses "
                                     f"word_embedding_size={dim}; set word_embedding_size: {file_dim}")
            index = words.get(word)
            if index is not None and index not in found:  # first occurrence wins
                weight[index] = torch.from_numpy(vector)
                found.add(index)
    if file_dim is None:
        raise ValueError(f"word_embeddings: {path} holds no vectors")
    return len(found), len(words) - len(found)


def build_word_embedding(tokenizer: Tokenizer, dim: int, path: Optional[str]) -> torch.nn.Embedding:
    """An ``nn.Embedding`` over the tokenizer's vocabulary (row 0 = padding, zero): random (N(0, 0.1)), with the
    vectors of ``path`` where it has them."""
    vocab = tokenizer.get_vocab()
    embedding = torch.nn.Embedding(len(vocab), dim, padding_idx=PAD_ID)
    torch.nn.init.normal_(embedding.weight, std=0.1)
    with torch.no_grad():
        if path:
            found, missing = load_word_vectors(path, vocab, embedding.weight)
            logger.info("word_embeddings: %d of %d words found in %s; %d unknown words keep random vectors",
                        found, found + missing, path, missing)
        embedding.weight[PAD_ID].zero_()
    return embedding


def text_corpus(records: Iterable[dict], fields: Sequence[str]) -> List[str]:
    """The texts of ``fields`` of every record (empty fields skipped), in record order."""
    return [str(record.get(field) or "") for record in records for field in fields if record.get(field)]
