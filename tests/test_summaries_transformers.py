"""The transformers backend with tiny randomly initialised causal LMs and tokenizers built here (no downloads)."""
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from recbole_embsum.summaries.backends import SummaryJob, TransformersBackend

WORDS = ("history user news article title abstract category sports finance recipes lakers celtics stocks pasta "
         "likes reads three sentences condense interests the of and in a about").split()
SPECIALS = ["[UNK]", "[PAD]", "[BOS]", "[EOS]"]
CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} {% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


def _save_tiny_lm(folder, architecture, chat_template=None):
    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS + ["<user>", "<assistant>"])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]",
                                        bos_token="[BOS]", eos_token="[EOS]")
    if chat_template:
        tokenizer.chat_template = chat_template
    ids = dict(vocab_size=len(vocab), bos_token_id=vocab["[BOS]"], eos_token_id=vocab["[EOS]"],
               pad_token_id=vocab["[PAD]"])
    torch.manual_seed(0)
    if architecture == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2, n_positions=256, **ids))
    else:
        model = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, num_key_value_heads=1,
                                             max_position_embeddings=256, **ids))
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def _jobs():
    contents = ["user reads sports lakers celtics", "history of finance stocks and pasta recipes in a news article",
                "condense the interests"]
    return [SummaryJob(f"U{k}", [{"role": "user", "content": text}], [], "h") for k, text in enumerate(contents)]


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_batched_generation_matches_one_by_one(tmp_path, architecture):
    folder = _save_tiny_lm(tmp_path / architecture, architecture)
    batched = TransformersBackend(str(folder), batch_size=2, max_new_tokens=6, device="cpu")
    answers = list(batched.run(_jobs()))
    assert [a.job.user_id for a in answers] == ["U0", "U1", "U2"]
    assert all(a.error is None and a.summary for a in answers), answers
    assert all(set(a.summary.split()) <= set(WORDS) | {"<user>", "<assistant>"} for a in answers)
    single = TransformersBackend(str(folder), batch_size=1, max_new_tokens=6, device="cpu")
    # left padding: a prompt's reply does not depend on the other prompts of its batch
    assert [a.summary for a in single.run(_jobs())] == [a.summary for a in answers]


def test_chat_template_is_used_when_the_tokenizer_has_one(tmp_path):
    folder = _save_tiny_lm(tmp_path / "chat", "llama", CHAT_TEMPLATE)
    backend = TransformersBackend(str(folder), batch_size=2, max_new_tokens=4, device="cpu")
    messages = [{"role": "user", "content": "user likes sports"}]
    assert backend.render(messages) == "<user> user likes sports <assistant>"
    assert all(a.summary for a in backend.run(_jobs()))


def test_missing_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match="needs --model"):
        TransformersBackend(None)
