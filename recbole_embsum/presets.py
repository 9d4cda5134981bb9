"""Named configuration presets (``properties/presets/<name>.yaml``) that a user names instead of copying values.

Two ways to ask for one, both resolved here:

* ``--config_files cpu-small`` (``run_recbole``, ``compare``, any RecBole ``Config``): a config file entry that is not
  an existing file but a preset name stands for that preset's yaml, at the priority of the user's yaml files;
* ``embsum_preset: cpu-small`` in any yaml, ``config_dict`` or ``--embsum_preset=cpu-small``: the preset's values
  are read just above the packaged defaults, so every value the user sets still wins (``registry.py``).
"""
import functools
import importlib.resources
import os

PRESET_KEY = "embsum_preset"


def presets_dir():
    return str(importlib.resources.files("recbole_embsum.properties").joinpath("presets"))


def available():
    """Names of the packaged presets."""
    return sorted(name[:-5] for name in os.listdir(presets_dir()) if name.endswith(".yaml"))


def preset_path(name):
    """The yaml file of preset ``name``; ValueError listing the presets for an unknown name."""
    path = os.path.join(presets_dir(), f"{name}.yaml")
    if not os.path.isfile(path):
        raise ValueError(f"{PRESET_KEY}: no preset named {name!r}; presets: {', '.join(available())}")
    return path


def resolve_config_files(entries):
    """``--config_files`` entries -> yaml paths: preset names as their packaged yaml, anything else as given."""
    if not entries:
        return entries
    resolved = []
    for entry in entries:
        if os.path.isfile(entry):
            resolved.append(entry)
        elif os.path.isfile(os.path.join(presets_dir(), f"{entry}.yaml")):
            resolved.append(preset_path(entry))
        else:  # a missing file: left to the file check, which says so in its own words
            resolved.append(entry)
    return resolved


def _resolving_preset_names(load_config_files):
    @functools.wraps(load_config_files)
    def wrapper(self, file_list):
        return load_config_files(self, resolve_config_files(file_list))

    wrapper._embsum_presets = True
    return wrapper


def install():
    """Make every RecBole ``Config`` read a preset name in ``config_file_list`` as that preset's yaml (idempotent;
    installed after ``validation.install()`` so the file check sees the resolved path)."""
    import recbole.config.configurator

    config_cls = recbole.config.configurator.Config
    if not getattr(config_cls._load_config_files, "_embsum_presets", False):
        config_cls._load_config_files = _resolving_preset_names(config_cls._load_config_files)
