"""Summary options: the packaged defaults (properties/summaries.yaml) overridden by config files, then by flags."""
from importlib import resources

import yaml

# Keys whose value must be a positive int / a non-negative number when set.
_POSITIVE_INTS = ("concurrency", "batch_size", "max_new_tokens", "max_items", "abstract_words",
                  "max_consecutive_failures")
_OPTIONAL_POSITIVE_INTS = ("max_users",)
_NON_NEGATIVE_INTS = ("max_retries",)
_NON_NEGATIVE_NUMBERS = ("backoff_base", "backoff_max", "timeout", "temperature")


class OptionsError(ValueError):
    """A bad summary option; the message names where it came from and the key."""


def default_options():
    """The documented defaults shipped in ``properties/summaries.yaml``."""
    text = resources.files("recbole_embsum.properties").joinpath("summaries.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _check(options, source):
    for key in _POSITIVE_INTS + _OPTIONAL_POSITIVE_INTS + _NON_NEGATIVE_INTS:
        value = options[key]
        if value is None and key in _OPTIONAL_POSITIVE_INTS:
            continue
        lowest = 0 if key in _NON_NEGATIVE_INTS else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            raise OptionsError(f"{source}: '{key}' must be an integer >= {lowest}, got {value!r}")
    for key in _NON_NEGATIVE_NUMBERS:
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise OptionsError(f"{source}: '{key}' must be a number >= 0, got {value!r}")
    from .backends import HeuristicBackend

    if options["heuristic_style"] not in HeuristicBackend.MODELS:
        raise OptionsError(f"{source}: 'heuristic_style' must be one of {sorted(HeuristicBackend.MODELS)}, got "
                           f"{options['heuristic_style']!r}")
    if isinstance(options["base_url"], str):
        options["base_url"] = [options["base_url"]]


def resolve_options(config_files=(), overrides=None):
    """Defaults < each YAML file of ``config_files`` < ``overrides`` (a dict; None values mean "not given")."""
    options = default_options()
    _check(options, "properties/summaries.yaml")
    for path in config_files:
        with open(path, "r", encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
        if not isinstance(data, dict):
            raise OptionsError(f"{path}: expected a mapping of summary options")
        unknown = sorted(set(data) - set(options))
        if unknown:
            raise OptionsError(f"{path}: unknown summary option(s) {unknown}; known: {sorted(options)}")
        options.update(data)
        _check(options, str(path))
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    unknown = sorted(set(given) - set(options))
    if unknown:
        raise OptionsError(f"unknown summary option(s) {unknown}")
    options.update(given)
    _check(options, "command line")
    return options
