"""`<name>.yaml` beside the converted files: what RecBole needs to load them, whatever the dataset is called.

The text is the packaged `properties/dataset/<format>.yaml` (mind or goodreads) as shipped, comments included, with
the keys that depend on this conversion's options replaced (the history width). `recbole_embsum.registry` reads
`<data_path>/<dataset>/<dataset>.yaml` at the dataset-yaml priority, so `convert mind --name mind_large` trains
without copying any yaml; a user's `--config_files`, `config_dict` and command line still win. It is a snapshot of
the packaged defaults at conversion time: converting again refreshes it.
"""
import importlib.resources
import importlib.util
import os
import re
import sys

import yaml

PROPERTIES_PACKAGE = "recbole_embsum.properties"
_TOP_LEVEL_KEY = re.compile(r"^(?P<key>[A-Za-z_][\w@.-]*)\s*:")


def packaged_properties_dir():
    """The folder of recbole_embsum's packaged yaml (package `recbole_embsum.properties`), found the way the import
    system would find it but without running `recbole_embsum/__init__.py`, which imports torch and RecBole (seconds
    a conversion does not need). Falls back to importing it when no finder answers."""
    parent = importlib.util.find_spec("recbole_embsum")
    if parent is not None and parent.submodule_search_locations:
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(PROPERTIES_PACKAGE, parent.submodule_search_locations) if find_spec else None
            if spec is not None and spec.submodule_search_locations:
                return list(spec.submodule_search_locations)[0]
    return str(importlib.resources.files(PROPERTIES_PACKAGE))


def packaged_dataset_yaml(source):
    """The text of the packaged dataset yaml for `source` ("mind" or "goodreads")."""
    with open(os.path.join(packaged_properties_dir(), "dataset", f"{source}.yaml"), encoding="utf-8") as handle:
        return handle.read()


def conversion_overrides(history_len):
    """Keys whose value follows from the conversion options: the history width the files were written with."""
    return {"seq_len": {"item_id_list": history_len}, "MAX_ITEM_LIST_LENGTH": history_len}


def replace_top_level_keys(text, values, comment):
    """`text` (a yaml mapping) with the blocks of the top-level keys in `values` replaced; missing keys appended.

    A block is the key's line and the indented lines under it; other lines (comments included) are kept as they are.
    """
    lines = text.splitlines()
    out, skipping, done = [], False, set()
    for line in lines:
        match = _TOP_LEVEL_KEY.match(line)
        if match:
            skipping = match["key"] in values
            if skipping:
                key = match["key"]
                out.append(_dump_key(key, values[key], comment))
                done.add(key)
                continue
        elif skipping and (line.startswith((" ", "\t")) or not line.strip()):
            continue
        else:
            skipping = False
        out.append(line)
    out += [_dump_key(key, value, comment) for key, value in values.items() if key not in done]
    return "\n".join(out) + "\n"


def _dump_key(key, value, comment):
    text = yaml.safe_dump({key: value}, default_flow_style=True, sort_keys=False, width=1000).strip()
    return f"{text[1:-1]}  # {comment}"


def dataset_yaml_text(source, name, history_len):
    """The `<name>.yaml` of a dataset converted from `source` with histories of `history_len` items."""
    header = (f"# RecBole settings of the converted dataset '{name}' (written by `recbole-embsum convert {source}`):\n"
              f"# the packaged properties/dataset/{source}.yaml with the history width of this conversion. Read "
              f"automatically\n# for --dataset={name}; your --config_files, config_dict and command line win.\n")
    body = replace_top_level_keys(packaged_dataset_yaml(source), conversion_overrides(history_len),
                                  f"this conversion's --history-len {history_len}")
    return header + body
