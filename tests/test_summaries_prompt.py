"""Training engagements from a converted folder, and the Appendix A prompt built from them."""
import pytest
from test_summaries_fakes import write_dataset

from recbole_embsum.summaries.history import DatasetFileError, ItemText, dataset_file, training_engagements
from recbole_embsum.summaries.prompt import (
    TemplateError,
    build_messages,
    condense,
    domain_for,
    prompt_hash,
    resolve_template,
)
from recbole_embsum.summaries.pipeline import _Prompts
from recbole_embsum.text.items import load_item_texts


def test_engagement_is_the_history_of_the_first_training_row_never_a_click(tmp_path):
    write_dataset(tmp_path)
    engagements = training_engagements(dataset_file(tmp_path, "toy", ".train.inter"))
    assert engagements == {
        "U1": ["N1", "N2"],  # the ts=100 row's history; not the ts=200 row's, which holds the I1 click N3
        "U2": ["N3"],
        "U3": ["N2"],  # the ts=10 row; its click N5 is left out
    }
    assert list(engagements) == ["U1", "U2", "U3"]  # order of first training row


def test_engagement_tie_goes_to_the_earlier_row_and_an_empty_first_history_is_kept_empty(tmp_path):
    rows = [("I1", "U1", "N3", 100, "N1", ""), ("I2", "U1", "N4", 100, "N1 N3", ""),
            ("I3", "U2", "N1", 10, "", ""), ("I4", "U2", "N2", 20, "N1", "")]  # growing histories (Goodreads)
    write_dataset(tmp_path, rows=rows)
    assert training_engagements(dataset_file(tmp_path, "toy", ".train.inter")) == {"U1": ["N1"], "U2": []}


def test_bad_inter_cell_names_file_line_and_field(tmp_path):
    folder = write_dataset(tmp_path)
    path = folder / "toy.train.inter"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].replace("\t50\t", "\tyesterday\t")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DatasetFileError, match=r"toy\.train\.inter, line 3, field 'timestamp': not a number"):
        training_engagements(path)


def test_item_texts_read_every_field(tmp_path):
    folder = write_dataset(tmp_path)
    texts = load_item_texts(folder / "toy.text.jsonl")
    assert ItemText.from_record(texts["N4"]) == ItemText("N4", "Easy pasta recipes for weeknights", "Five dinners in twenty minutes.",
                                   "foodanddrink", "recipes")


def test_news_prompt_lists_items_most_recent_first(tmp_path):
    folder = write_dataset(tmp_path)
    texts = load_item_texts(folder / "toy.text.jsonl")
    items = [ItemText.from_record(texts[i]) for i in ("N4", "N3", "N2", "N1")]
    messages = build_messages(items, resolve_template("news"))
    assert len(messages) == 1 and messages[0]["role"] == "user"
    expected = (
        "You are given the browsing history of a user of a news website: the news articles the user clicked, "
        "listed from the most recent to the oldest. Each article comes with its title, abstract and category. "
        "Read the history and work out what the user is interested in.\n\nHistorical clicked news:\n\n"
        "(1) Title: Easy pasta recipes for weeknights\nAbstract: Five dinners in twenty minutes.\n"
        "Category: foodanddrink\n\n"
        "(2) Title: Celtics sign veteran guard\nAbstract: Boston adds depth to its roster.\nCategory: sports\n\n"
        "(3) Title: Stocks rally as inflation cools\nAbstract: Markets rose after the report.\nCategory: finance\n\n"
        "(4) Title: Lakers beat Celtics in overtime\nAbstract: The Lakers won a close game in Boston.\n"
        "Category: sports\n\n"
        "Based on the news history above, condense the user's interests into three sentences. "
        "Answer with the three sentences only."
    )
    assert messages[0]["content"] == expected


def test_books_template_speaks_of_descriptions_and_genres():
    book = ItemText("B1", "Dune", "A desert planet.", "fantasy, sci-fi", "")
    content = build_messages([book], resolve_template(domain_for("goodreads"))).pop()["content"]
    assert "(1) Title: Dune\nDescription: A desert planet.\nGenre: fantasy, sci-fi" in content
    assert "condense the user's interests into three sentences" in content
    assert domain_for("mind_small") == "news"


def test_at_most_max_items_most_recent_kept():
    texts = {f"N{i}": ItemText(f"N{i}", f"t{i}", "", "c", "") for i in range(100)}
    options = {"max_items": 60, "abstract_words": 100}
    job = _Prompts(texts, resolve_template("news"), options, "heuristic", "m").job("U1", list(texts))
    assert [item.item_id for item in job.items] == [f"N{i}" for i in range(99, 39, -1)]
    job = _Prompts(texts, resolve_template("news"), options, "heuristic", "m").job("U1", ["N1", "N2"])
    assert [item.item_id for item in job.items] == ["N2", "N1"]


def test_abstract_condensed_to_100_words():
    text = " ".join(f"w{i}" for i in range(150))
    assert condense(text) == " ".join(f"w{i}" for i in range(100)) + " ..."
    assert condense("  short\n abstract ") == "short abstract"
    item = ItemText("N", "T", text, "c", "s")
    content = build_messages([item], resolve_template("news"))[0]["content"]
    assert "w99 ..." in content and "w100" not in content


def test_template_override_from_file_and_errors(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("system: Be brief.\nitem: '- {title} [{subcategory}]'\n", encoding="utf-8")
    template = resolve_template("news", path)
    messages = build_messages([ItemText("N", "Title", "", "c", "sub")], template)
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert "\n\n- Title [sub]\n\n" in messages[1]["content"]
    path.write_text("closing: [not, text]\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"t\.yaml, key 'closing': expected a string, got list"):
        resolve_template("news", path)
    with pytest.raises(TemplateError, match=r"unknown key 'intro'"):
        resolve_template("news", {"intro": "x"})
    with pytest.raises(TemplateError, match=r"key 'item': unknown placeholder \{author\}"):
        resolve_template("news", {"item": "{title} by {author}"})


def test_prompt_hash_covers_messages_model_and_backend():
    messages = [{"role": "user", "content": "x"}]
    base = prompt_hash(messages, "m", "openai")
    assert len(base) == 64
    assert base == prompt_hash([{"role": "user", "content": "x"}], "m", "openai")
    assert base != prompt_hash([{"role": "user", "content": "y"}], "m", "openai")
    assert base != prompt_hash(messages, "m2", "openai")
    assert base != prompt_hash(messages, "m", "transformers")
