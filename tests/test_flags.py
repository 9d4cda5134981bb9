"""One flag style for every `recbole-embsum` command: dashed options in every --help, the old underscore spellings
still accepted with one deprecation line each, misspellings rejected with argparse's message, RecBole's --key=value
passed through (compare)."""
import argparse

import pytest

from recbole_embsum.cli import build_parser
from recbole_embsum.flags import DashedParser


def _command_parsers():
    """(name, parser) for every (sub)command of `recbole-embsum`, nested ones (convert mind) included."""
    pending = [("recbole-embsum", build_parser())]
    while pending:
        name, parser = pending.pop()
        yield name, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending.extend((f"{name} {sub}", child) for sub, child in action.choices.items())


def test_every_help_lists_dashed_options_only():
    names = []
    for name, parser in _command_parsers():
        names.append(name)
        help_text = parser.format_help()
        listed = help_text[help_text.index("options:"):]  # the option list (descriptions may quote RecBole keys)
        option_lines = [line.split() for line in listed.splitlines() if line.lstrip().startswith("-")]
        options = {word.strip(",") for words in option_lines for word in words[:4] if word.startswith("--")}
        options |= {option for action in parser._actions for option in action.option_strings}
        assert [option for option in options if "_" in option] == [], name
    for command in ("convert mind", "convert goodreads", "synth", "summarize", "compare", "evaluate-summaries",
                    "demo", "export", "recommend"):
        assert f"recbole-embsum {command}" in names


def _parse(argv):
    return build_parser().parse_args(argv)


@pytest.mark.parametrize("old, new, value", [
    (["summarize", "--dataset", "d", "--data_path", "data", "--max_users", "3"], "max_users", 3),
    (["summarize", "--dataset", "d", "--data_path=data", "--base_url", "http://x/v1"], "base_url", ["http://x/v1"]),
    (["evaluate-summaries", "--checkpoint", "c", "--references", "r", "--output", "o", "--batch_size=8"],
     "batch_size", 8),
    (["compare", "--dataset", "d", "--data_path", "data", "--output", "o", "--config_files", "a.yaml", "cpu-small"],
     "config_files", ["a.yaml", "cpu-small"]),
    (["convert", "mind", "--input", "raw", "--output", "data", "--max_negatives", "7"], "max_negatives", 7),
])
def test_an_old_spelling_still_works_and_prints_one_deprecation_line(capsys, old, new, value):
    args = _parse(old)
    assert getattr(args, new) == value
    err = capsys.readouterr().err.strip().splitlines()
    old_flags = [token.split("=")[0] for token in old if token.startswith("--") and "_" in token]
    assert len(err) == len(old_flags)
    for line, flag in zip(err, old_flags):
        assert "deprecated" in line and flag in line and flag.replace("_", "-") in line
    assert args.data_path == "data" if hasattr(args, "data_path") else True


def test_the_new_spelling_prints_nothing(capsys):
    args = _parse(["summarize", "--dataset", "d", "--data-path", "data", "--max-users", "3", "--base-url", "u"])
    assert (args.data_path, args.max_users, args.base_url) == ("data", 3, ["u"])
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("token, expected", [
    ("--drop_empty_history=True", True), ("--drop_empty_history=False", False), ("--drop-empty-history", True),
    ("--no-drop-empty-history", False), (None, None),
])
def test_compare_drop_empty_history_flag_and_its_old_key_value_spelling(capsys, token, expected):
    argv = ["compare", "--dataset", "d", "--data-path", "data", "--output", "o", "--epochs=2"]
    args = _parse(argv + ([token] if token else []))
    assert args.drop_empty_history is expected
    assert args.overrides == {"epochs": 2}  # a RecBole key stays a RecBole override, without a warning
    assert ("deprecated" in capsys.readouterr().err) == bool(token and "_" in token)


def test_compare_passes_recbole_keys_through_and_rejects_a_misspelt_option(capsys):
    args = _parse(["compare", "--dataset", "d", "--data-path", "data", "--output", "o", "--train_batch_size=64",
                   "--eval_args={'mode': 'labeled'}"])
    assert args.overrides == {"train_batch_size": 64, "eval_args": {"mode": "labeled"}}
    assert capsys.readouterr().err == ""
    with pytest.raises(SystemExit) as exit_info:
        _parse(["compare", "--dataset", "d", "--data-path", "data", "--output", "o", "--max-user=3"])
    assert exit_info.value.code == 2
    assert "error: unrecognized arguments: --max-user=3" in capsys.readouterr().err


@pytest.mark.parametrize("argv, bad", [
    (["summarize", "--dataset", "d", "--data-path", "data", "--maxusers", "3"], "--maxusers"),
    (["evaluate-summaries", "--checkpoint", "c", "--references", "r", "--output", "o", "--batchsize", "2"],
     "--batchsize"),
    (["convert", "mind", "--input", "raw", "--output", "data", "--history_length", "5"], "--history_length"),
])
def test_a_misspelt_flag_fails_with_argparses_message(capsys, argv, bad):
    with pytest.raises(SystemExit) as exit_info:
        _parse(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: recbole-embsum ") and f"error: unrecognized arguments: {bad}" in err


def test_a_flag_given_a_non_boolean_old_value_is_an_error(capsys):
    with pytest.raises(SystemExit):
        _parse(["compare", "--dataset", "d", "--data-path", "data", "--output", "o", "--drop_empty_history=maybe"])
    assert "expected True or False after --drop_empty_history=, got 'maybe'" in capsys.readouterr().err


def test_an_option_defined_with_an_underscore_is_refused():
    parser = DashedParser(prog="tool")
    parser.add_argument("--new_option")
    with pytest.raises(ValueError, match="option --new_option is spelled with '_'.*--new-option"):
        parser.format_help()
    with pytest.raises(ValueError, match="--new-option"):
        parser.parse_args([])


def test_values_and_tokens_after_a_double_dash_are_left_alone(capsys):
    parser = DashedParser(prog="tool")
    parser.add_argument("--data-path")
    parser.add_argument("rest", nargs="*")
    args = parser.parse_args(["--data-path", "my_dir", "--", "--data_path"])
    assert (args.data_path, args.rest) == ("my_dir", ["--data_path"])
    assert capsys.readouterr().err == ""
