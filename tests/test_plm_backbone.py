"""The PLM loader of the baselines (``load_plm``): scratch models of each family with their family's special tokens,
the round trip a user with a real checkpoint takes (``plm=<folder>``), tokenizer caches kept apart per family, and
one-line errors for a ``plm`` that cannot be loaded or sizes of another family."""
import os

import pytest
import torch
from transformers import AutoConfig

from recbole_embsum.text.backbone import (BERT_SCHEME, ROBERTA_SCHEME, T5_SCHEME, load_plm, tokenizer_cache_dir,
                                          tokenizer_cache_key)

CORPUS = ["News Title: storms hit the coast; News Category: weather", "The user reads about sports and politics.",
          "Markets rally as the bank cuts rates", "A new coach for the season"] * 10
SIZES = {
    "roberta": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
    "bert": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
    "bart": {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
             "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64},
}
HUB_NAMES = {"roberta": "roberta-base", "bert": "bert-base-uncased", "bart": "facebook/bart-base"}


def _config(tmp_path, family, **overrides):
    return {"plm_init": "scratch", "plm": HUB_NAMES[family], "plm_config": SIZES[family], "data_path": str(tmp_path),
            "dataset": "d", "tokenizer_vocab_size": 300, "gradient_checkpointing": False, **overrides}


@pytest.mark.parametrize("family,kind,specials", [
    ("roberta", "encoder", ("<s>", "</s>", "<pad>")),
    ("bert", "encoder", ("[CLS]", "[SEP]", "[PAD]")),
    ("bart", "seq2seq", ("<s>", "</s>", "<pad>")),
])
def test_scratch_model_saved_and_reloaded_as_a_pretrained_checkpoint_is_the_same(tmp_path, family, kind, specials):
    torch.manual_seed(0)
    model, tokenizer = load_plm(_config(tmp_path, family), lambda: iter(CORPUS), kind)
    assert model.config.model_type == family and model.config.hidden_size == 32
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert (tokenizer.cls_token, tokenizer.sep_token, tokenizer.pad_token) == specials
    batch = tokenizer(["storms hit the coast", "sports"], padding=True, return_tensors="pt")
    ids = batch["input_ids"]
    assert ids[0, 0] == tokenizer.cls_token_id and ids[0, -1] == tokenizer.sep_token_id  # the family's layout
    assert ids[1, -1] == tokenizer.pad_token_id
    if family == "bart":
        assert model.config.decoder_start_token_id == tokenizer.eos_token_id  # as facebook/bart-base

    folder = tmp_path / f"my-{family}"  # what a user with a real checkpoint has: a save_pretrained folder
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    loaded, reloaded_tokenizer = load_plm(_config(tmp_path, family, plm_init="pretrained", plm=str(folder),
                                                  plm_config=None), lambda: pytest.fail("no corpus needed"), kind)
    assert type(loaded) is type(model)
    assert reloaded_tokenizer(["storms hit the coast", "sports"], padding=True)["input_ids"] == ids.tolist()
    model.eval(), loaded.eval()
    with torch.no_grad():
        inputs = {"input_ids": ids, "attention_mask": batch["attention_mask"]}
        if kind == "seq2seq":
            inputs["decoder_input_ids"] = ids
        output = "last_hidden_state" if kind == "encoder" else "logits"
        torch.testing.assert_close(getattr(loaded(**inputs), output), getattr(model(**inputs), output))


def test_tokenizer_caches_are_kept_apart_by_special_token_scheme(tmp_path):
    schemes = (T5_SCHEME, BERT_SCHEME, ROBERTA_SCHEME)
    keys = {scheme.name: tokenizer_cache_key(CORPUS, 300, scheme) for scheme in schemes}
    assert len({str(sorted(key.items())) for key in keys.values()}) == 3
    assert keys["bert"]["special_tokens"] == "bert" and keys["t5"]["special_tokens"] == "t5"
    for family in ("roberta", "bert"):
        load_plm(_config(tmp_path, family), lambda: iter(CORPUS), "encoder")
    load_plm(_config(tmp_path, "bart"), lambda: iter(CORPUS), "seq2seq")  # BART's tokenizer is RoBERTa's
    assert len(os.listdir(tokenizer_cache_dir(str(tmp_path), "d"))) == 2


def test_gradient_checkpointing_is_switched_on(tmp_path):
    model, _ = load_plm(_config(tmp_path, "roberta", gradient_checkpointing=True), lambda: iter(CORPUS), "encoder")
    assert model.is_gradient_checkpointing


def test_plm_that_cannot_be_loaded_and_sizes_of_another_family_fail_in_one_line(tmp_path):
    with pytest.raises(OSError, match=r"^plm='.*no-such-roberta' could not be loaded .* plm_init: scratch") as error:
        load_plm(_config(tmp_path, "roberta", plm_init="pretrained", plm=str(tmp_path / "no-such-roberta")),
                 lambda: iter(CORPUS), "encoder")
    assert "\n" not in str(error.value).split(" (")[0]
    with pytest.raises(ValueError, match=r"plm_config: d_model, num_layers not a field of RobertaConfig"):
        load_plm(_config(tmp_path, "roberta", plm_config={"d_model": 32, "num_layers": 1}), lambda: iter(CORPUS))
    with pytest.raises(ValueError, match=r"cannot tell the model family from plm=.my-model.; set plm_config"):
        load_plm(_config(tmp_path, "roberta", plm="my-model"), lambda: iter(CORPUS))
    model, tokenizer = load_plm(_config(tmp_path, "bert", plm="my-model", plm_config={"model_type": "bert",
                                                                                     **SIZES["bert"]}),
                                lambda: iter(CORPUS))
    assert model.config.model_type == "bert" and tokenizer.cls_token == "[CLS]"
    with pytest.raises(ValueError, match=r"builds tokenizers for .* not 'gpt2'"):
        load_plm(_config(tmp_path, "roberta", plm="gpt2", plm_config={}), lambda: iter(CORPUS))
    with pytest.raises(ValueError, match="kind must be one of"):
        load_plm(_config(tmp_path, "roberta"), lambda: iter(CORPUS), "decoder")


def test_one_plm_config_with_an_entry_per_family_serves_every_backbone(tmp_path):
    """A preset names sizes per model type (the cpu-small preset does), so EmbSum's T5 and a RoBERTa baseline both
    run from one file; a family without an entry, or entries mixed with bare fields, stop in one line."""
    from recbole.config import Config

    from recbole_embsum.text.backbone import family_plm_config

    per_family = {family: SIZES[family] for family in ("roberta", "bert")}
    model, _ = load_plm(_config(tmp_path, "bert", plm_config=per_family), lambda: iter(CORPUS))
    assert model.config.model_type == "bert" and model.config.hidden_size == 32
    assert family_plm_config(SIZES["bart"], "bart") == SIZES["bart"]  # bare fields are used as they are
    with pytest.raises(ValueError, match=r"plm_config has sizes for roberta, bert but this model's backbone is 'bart'"):
        load_plm(_config(tmp_path, "bart", plm_config=per_family), lambda: iter(CORPUS), "seq2seq")
    with pytest.raises(ValueError, match=r"plm_config mixes per-family entries \(roberta\) with fields \(hidden_size\)"):
        family_plm_config({"roberta": SIZES["roberta"], "hidden_size": 8}, "roberta")

    preset = Config(model="EmbSum", dataset="mind", config_file_list=["cpu-small"],
                    config_dict={"data_path": str(tmp_path)})["plm_config"]
    assert family_plm_config(preset, "t5")["d_model"] == 64  # EmbSum's T5 of the cpu-small preset
    for family in ("roberta", "bert", "bart"):  # every PLM baseline's family has valid fields there
        config = AutoConfig.for_model(family, **family_plm_config(preset, family))
        assert config.hidden_size == 64
