"""Config values that cannot work, refused in one line before any data is read or any model is built.

RecBole accepts ``epochs=0`` (and then prints a "test result" of an untrained model), ``train_batch_size=0`` (an
endless loop or a ZeroDivisionError deep inside a dataloader), a dataset name such as ``../x`` (a data folder outside
``data_path``) and a missing ``--config_files`` entry (a raw FileNotFoundError traceback from inside Config).
:func:`check_config_files` and :func:`check_config` say what is wrong and what to do instead; ``install()`` makes
every RecBole ``Config`` run them (the command line, ``run_recbole`` from Python, RecBole's own quick start), and a
preflight may call them directly.
"""
import functools
import os

# Options that count something and mean nothing below 1, with what a value below 1 would do.
POSITIVE_INTEGERS = {
    "epochs": "the model would be tested untrained",
    "train_batch_size": "no training batch can be formed",
    "eval_batch_size": "no evaluation batch can be formed",
    "MAX_ITEM_LIST_LENGTH": "every history would be cut to nothing",
    "upe_codes": "EmbSum's user poly-embedding needs at least one code (1 = the 'wo UPE' ablation)",
    "cpe_codes": "EmbSum's content poly-embedding needs at least one code",
    "grad_accum_steps": "the optimizer would never step",
    "effective_batch_size": "grad_accum_steps: auto would have no batch to aim at",
}
# Options of POSITIVE_INTEGERS that also take a word: grad_accum_steps: auto (EmbSumTrainer derives the integer).
WORDS = {"grad_accum_steps": ("auto",)}


class ConfigError(ValueError):
    """A config value or argument that cannot work; the message names it and says what to do."""


def check_config_files(config_file_list):
    """Raise `ConfigError` unless every entry of ``config_file_list`` (None or a list of paths) is a file."""
    for path in config_file_list or []:
        if not os.path.isfile(path):
            what = "is a folder, not a yaml file" if os.path.isdir(path) else "does not exist"
            from recbole_embsum import presets

            raise ConfigError(f"--config_files: {path} {what}; give existing yaml files or preset names "
                              f"({', '.join(presets.available())}), separated by spaces")


def check_dataset_name(name):
    """Raise `ConfigError` unless ``name`` is a plain folder name (the dataset lives in ``data_path/<name>/``)."""
    text = str(name)
    if not text or text in (".", "..") or "/" in text or "\\" in text or os.sep in text or "\0" in text:
        raise ConfigError(
            f"--dataset: {text!r} is not a plain folder name; put the dataset in <data_path>/<name>/ and pass "
            f"--dataset=<name> (set data_path for another parent folder)"
        )


def config_keys():
    """Every config key a yaml default names: RecBole's (overall, models, datasets, quick-start configs) and ours
    (overall, models, datasets, presets), plus ``config_files`` (a ``run_recbole`` flag, not a yaml key)."""
    import glob

    import recbole
    import yaml

    from recbole_embsum.registry import properties_dir

    recbole_dir = os.path.join(os.path.dirname(recbole.__file__), "properties")
    paths = [os.path.join(recbole_dir, "overall.yaml"), os.path.join(properties_dir(), "overall.yaml")]
    for folder in (os.path.join(recbole_dir, "model"), os.path.join(recbole_dir, "quick_start_config"),
                   os.path.join(properties_dir(), "model"), os.path.join(properties_dir(), "dataset"),
                   os.path.join(properties_dir(), "presets")):
        paths.extend(glob.glob(os.path.join(folder, "*.yaml")))
    paths.extend(os.path.join(recbole_dir, "dataset", name) for name in ("sample.yaml", "ml-100k.yaml"))
    keys = {"config_files", "data_path"}
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            keys.update(str(key) for key in (yaml.safe_load(handle) or {}))
    return keys


def check_command_line_spelling(argv):
    """Raise `ConfigError` for a ``--some-key[=value]`` in ``argv`` whose underscore spelling is a config key.

    RecBole reads ``--key=value`` from the command line as the key written there, so ``--data-path=/x`` (the dashed
    spelling of the ``recbole-embsum`` commands) would set an unknown key ``data-path`` and the run would go on with
    the default ``data_path``."""
    dashed = [token for token in argv if token.startswith("--") and "-" in token[2:].partition("=")[0]]
    if not dashed:
        return
    known = config_keys()
    for token in dashed:
        option, equals, value = token[2:].partition("=")
        if option.replace("-", "_") in known:
            value = value if equals else "..."
            raise ConfigError(f"run_recbole takes RecBole's --key=value spelling: use "
                              f"--{option.replace('-', '_')}={value} instead of --{option}={value}")


def check_config(config):
    """Raise `ConfigError` for the first value of ``config`` (a RecBole Config or a dict) that cannot work."""
    if "dataset" in config:
        check_dataset_name(config["dataset"])
    for key, consequence in POSITIVE_INTEGERS.items():
        value = config[key] if key in config else None
        if value is None or (isinstance(value, str) and value.strip().lower() in WORDS.get(key, ())):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(
                f"{key} must be an integer >= 1{''.join(f' or {word}' for word in WORDS.get(key, ()))}, got "
                f"{value!r} ({consequence}); set --{key}=N or {key}: N in a yaml file"
            )


def _checking_config_files(load_config_files):
    @functools.wraps(load_config_files)
    def wrapper(self, file_list):
        check_config_files(file_list)
        return load_config_files(self, file_list)

    wrapper._embsum_validation = True
    return wrapper


def _checking_values(set_default_parameters):
    @functools.wraps(set_default_parameters)
    def wrapper(self):
        set_default_parameters(self)
        check_config(self.final_config_dict)

    wrapper._embsum_validation = True
    return wrapper


def install():
    """Make every ``Config`` check its files before reading them and its values once they are final (idempotent)."""
    import recbole.config.configurator

    config_cls = recbole.config.configurator.Config
    if not getattr(config_cls._load_config_files, "_embsum_validation", False):
        config_cls._load_config_files = _checking_config_files(config_cls._load_config_files)
    if not getattr(config_cls._set_default_parameters, "_embsum_validation", False):
        config_cls._set_default_parameters = _checking_values(config_cls._set_default_parameters)
