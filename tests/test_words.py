"""Word-level tokenizer (trained with Hugging Face tokenizers, cached by corpus and settings) and word vectors
(GloVe text format streamed, .npy matrices)."""
import logging
import os

import numpy as np
import pytest
import torch

from recbole_embsum.text.words import (PAD_ID, build_word_embedding, encode_words, load_or_train_word_tokenizer,
                                        load_word_vectors)

CORPUS = ["Stocks rally as Investors cheer", "The coach's new season: a playoff run!", "stocks fall"]


def test_tokenizer_splits_words_and_punctuation_and_pads(tmp_path):
    tokenizer = load_or_train_word_tokenizer(str(tmp_path / "d"), CORPUS, 100, 1, lowercase=True)
    vocab = tokenizer.get_vocab()
    assert vocab["[PAD]"] == PAD_ID and vocab["[UNK]"] == 1
    assert {"stocks", "investors", "coach", "'", "playoff", ":", "!"} <= set(vocab)
    ids = encode_words(tokenizer, ["Stocks fall", "stocks unknownword rally rally rally"], 3)
    assert ids.shape == (2, 3)
    assert ids[0].tolist() == [vocab["stocks"], vocab["fall"], PAD_ID]
    assert ids[1].tolist() == [vocab["stocks"], 1, vocab["rally"]]  # unknown word -> [UNK], cut to 3 words


def test_tokenizer_cache_is_keyed_by_corpus_and_settings(tmp_path):
    prefix = str(tmp_path / "d")
    load_or_train_word_tokenizer(prefix, CORPUS, 100, 1, lowercase=True)
    load_or_train_word_tokenizer(prefix, CORPUS, 100, 1, lowercase=True)  # reused
    assert len([f for f in os.listdir(tmp_path) if f.startswith("d.words-")]) == 1
    cased = load_or_train_word_tokenizer(prefix, CORPUS, 100, 1, lowercase=False)
    assert "Investors" in cased.get_vocab()
    load_or_train_word_tokenizer(prefix, CORPUS + ["more text"], 100, 1, lowercase=True)
    assert len([f for f in os.listdir(tmp_path) if f.startswith("d.words-")]) == 3
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


def test_glove_text_vectors_are_loaded_and_unknown_words_counted(tmp_path, caplog):
    tokenizer = load_or_train_word_tokenizer(str(tmp_path / "d"), CORPUS, 100, 1, lowercase=True)
    glove = tmp_path / "glove.tiny.3d.txt"
    glove.write_text("stocks 0.1 0.2 0.3\n. . . 9 9 9\ncoach -1 0 1.5\nabsent 4 4 4\nstocks 7 7 7\n", encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="recbole_embsum.text.words"):
        embedding = build_word_embedding(tokenizer, 3, str(glove))
    vocab = tokenizer.get_vocab()
    assert torch.allclose(embedding.weight[vocab["stocks"]], torch.tensor([0.1, 0.2, 0.3]))  # first occurrence
    assert torch.allclose(embedding.weight[vocab["coach"]], torch.tensor([-1.0, 0.0, 1.5]))
    assert torch.equal(embedding.weight[PAD_ID], torch.zeros(3))
    found, missing = load_word_vectors(str(glove), vocab, torch.zeros(len(vocab), 3))
    assert found == 2 and missing == len(vocab) - 2 - 2  # [PAD] and [UNK] are not words
    assert f"2 of {len(vocab) - 2} words found" in caplog.text


def test_npy_vectors_and_bad_files_say_what_is_wrong(tmp_path):
    tokenizer = load_or_train_word_tokenizer(str(tmp_path / "d"), CORPUS, 100, 1, lowercase=True)
    size = tokenizer.get_vocab_size()
    matrix = np.arange(size * 2, dtype=np.float32).reshape(size, 2)
    np.save(tmp_path / "vectors.npy", matrix)
    embedding = build_word_embedding(tokenizer, 2, str(tmp_path / "vectors.npy"))
    assert torch.equal(embedding.weight[5], torch.tensor(matrix[5]))
    with pytest.raises(ValueError, match=r"shape \(%d, 2\).*\(%d, 4\)" % (size, size)):
        build_word_embedding(tokenizer, 4, str(tmp_path / "vectors.npy"))
    (tmp_path / "wide.txt").write_text("stocks 1 2 3 4\n", encoding="utf-8")
    with pytest.raises(ValueError, match="4-d vectors.*word_embedding_size: 4"):
        build_word_embedding(tokenizer, 3, str(tmp_path / "wide.txt"))
    (tmp_path / "bad.txt").write_text("stocks 1 2 3\ncoach 1 x 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:2: the last 3 fields are not all numbers"):
        build_word_embedding(tokenizer, 3, str(tmp_path / "bad.txt"))
    with pytest.raises(FileNotFoundError, match="word_embeddings: .*missing.txt does not exist"):
        build_word_embedding(tokenizer, 3, str(tmp_path / "missing.txt"))
