"""Summary options: packaged defaults < config files < flags, with errors naming the source and key."""
import pytest

from recbole_embsum.summaries.options import OptionsError, default_options, resolve_options


def test_packaged_defaults_follow_the_paper():
    options = default_options()
    assert options["backend"] == "heuristic"  # offline default
    assert options["max_items"] == 60 and options["abstract_words"] == 100  # Appendix A
    assert options["base_url"] == [] and options["overwrite"] is False


def test_config_file_then_flags_override(tmp_path):
    config = tmp_path / "llm.yaml"
    config.write_text("backend: openai\nmodel: mixtral\nbase_url: http://a:8000/v1\nconcurrency: 4\n", encoding="utf-8")
    options = resolve_options([config], {"concurrency": 16, "model": None})
    assert options["backend"] == "openai" and options["model"] == "mixtral"  # None = flag not given
    assert options["base_url"] == ["http://a:8000/v1"]  # a single URL becomes a list
    assert options["concurrency"] == 16


def test_unknown_key_and_bad_value_are_named(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("concurency: 4\n", encoding="utf-8")
    with pytest.raises(OptionsError, match=r"bad\.yaml: unknown summary option\(s\) \['concurency'\]"):
        resolve_options([config])
    config.write_text("max_items: -1\n", encoding="utf-8")
    with pytest.raises(OptionsError, match=r"bad\.yaml: 'max_items' must be an integer >= 1, got -1"):
        resolve_options([config])
    with pytest.raises(OptionsError, match=r"command line: 'timeout' must be a number >= 0, got -2"):
        resolve_options(overrides={"timeout": -2})
    config.write_text("heuristic_style: shrot\n", encoding="utf-8")  # named before any data is read
    with pytest.raises(OptionsError, match=r"bad\.yaml: 'heuristic_style' must be one of \['brief', 'full'\], "
                                           r"got 'shrot'"):
        resolve_options([config])
