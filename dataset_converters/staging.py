"""Where a conversion writes: `<output>/<name>/`, built in a sibling folder and swapped in only on success.

A conversion never touches an existing dataset before it has finished: it writes everything into
`<output>/.<name>.tmp/`, and only then (with `--overwrite`) moves the old folder aside, renames the new one into
place and deletes the old one. A bad line, a full disk or a kill therefore leaves the old dataset as it was.

From the old folder, files that are not the converter's and not derived from the converted text are carried over
(hard links, or copies across file systems): e.g. LLM summaries and a user's own notes. The converter's own files
and caches derived from the item text (the scratch tokenizer `<name>.tokenizer*`) are not: a tokenizer is valid
only for the text it was trained on, and the model retrains it.

`<output>/.<name>.lock` (an exclusive `flock`, released by the kernel when the process dies) tells a second
conversion of the same name that one is running; without that lock held, a leftover `.<name>.tmp/` (or
`.<name>.old/`) is from a killed run: the next run removes it (restoring `.<name>.old/` when the swap itself was
interrupted) and says which paths it removed.
"""
import contextlib
import fcntl
import logging
import os
import shutil

from .outputs import check_writable_folder

logger = logging.getLogger(__name__)

# Files in the dataset folder that a conversion writes; everything else there is carried over, except DERIVED.
OUTPUT_SUFFIXES = (
    ".train.inter",
    ".valid.inter",
    ".test.inter",
    ".predict.inter",
    ".item",
    ".text.jsonl",
    ".stats.json",
    ".yaml",
    ".store",  # the history store folder (dataset_converters/store.py)
    ".entity_embedding.vec",  # MIND's entity vectors, merged over the splits
)
# Prefixes (after `<name>`) of caches built from the converted text; stale once the text changes.
DERIVED_PREFIXES = (".tokenizer", ".words-")  # EmbSum's scratch tokenizer; the baselines' word tokenizers


def check_name(name):
    """Refuses a dataset name that is not one plain file-name component (it names a folder and a file prefix)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"--name {name!r}: a dataset name must not be empty")
    if name in (".", "..") or name.startswith(".") or "/" in name or "\\" in name or "\0" in name \
            or (os.path.altsep and os.path.altsep in name) or name != name.strip():
        raise ValueError(f"--name {name!r}: a dataset name must be a plain file name (no '/', '\\', leading '.' or "
                         f"surrounding spaces), e.g. --name mind_large")
    return name


def _is_derived(entry, name):
    return any(entry.startswith(name + prefix) or entry.startswith("." + name + prefix) for prefix in DERIVED_PREFIXES)


def _is_owned(entry, name):
    return entry in {name + suffix for suffix in OUTPUT_SUFFIXES}


def _is_temporary(entry):
    return entry.startswith(".") and entry.endswith(".tmp")


def _link_or_copy(source, target):
    """Hard links of `source` (a file or a folder tree) at `target`; copies when linking is not possible."""
    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    if os.path.isdir(source) and not os.path.islink(source):
        shutil.copytree(source, target, symlinks=True, copy_function=link)
    else:
        link(source, target)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


class StagedFolder:
    """`with StagedFolder(output, name, overwrite) as stage:` write into `stage.path`, then `stage.commit()`.

    Leaving the block without `commit()` (an exception) removes the staging folder; the old dataset, if any, is
    untouched. `removed` lists the leftovers of killed runs that were cleaned up, `carried` the files kept from the
    old folder.
    """

    def __init__(self, output, name, overwrite=False):
        self.name = check_name(name)
        self.output = os.fspath(output)
        self.overwrite = overwrite
        self.target = os.path.join(self.output, name)
        if os.path.islink(self.target):  # e.g. data/mind -> /big/disk/mind: replace the folder it points to
            self.target = os.path.realpath(self.target)
        parent, base = os.path.split(self.target)
        self.path = os.path.join(parent, f".{base}.tmp")
        self._old = os.path.join(parent, f".{base}.old")
        self._lock_path = os.path.join(parent, f".{base}.lock")
        self._lock = None
        self.removed = []
        self.carried = []
        self.committed = False

    def __enter__(self):
        check_writable_folder(self.output)
        os.makedirs(self.output, exist_ok=True)
        os.makedirs(os.path.dirname(self.target), exist_ok=True)
        self._acquire_lock()
        try:
            self._clean_leftovers()
            if os.path.isdir(self.target) and os.listdir(self.target) and not self.overwrite:
                removed = f" (removed leftovers of an interrupted conversion: {', '.join(self.removed)})" \
                    if self.removed else ""
                raise FileExistsError(f"output folder {self.target} already exists and is not empty; pass "
                                      f"--overwrite to replace it (its summaries and other files of yours are "
                                      f"kept){removed}")
            if os.path.exists(self.target) and not os.path.isdir(self.target):
                raise FileExistsError(f"{self.target} exists and is not a folder; remove it or choose another --name")
            os.mkdir(self.path)
        except BaseException:
            self._release_lock()
            raise
        return self

    def _acquire_lock(self):
        handle = open(self._lock_path, "a+b")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise FileExistsError(f"another conversion is writing {self.target} (it holds {self._lock_path}); wait "
                                  f"for it to finish") from None
        self._lock = handle

    def _release_lock(self):
        if self._lock is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._lock_path)
            self._lock.close()
            self._lock = None

    def _clean_leftovers(self):
        """Removes what a killed run left: the staging folder, temporary files, or an interrupted swap."""
        if os.path.isdir(self._old):
            if os.path.exists(self.target):
                _remove(self._old)
                self.removed.append(self._old)
            else:  # killed between the two renames of the swap: the old dataset goes back
                os.rename(self._old, self.target)
                logger.warning("restored %s from %s (an earlier conversion was interrupted)", self.target, self._old)
        if os.path.lexists(self.path):
            _remove(self.path)
            self.removed.append(self.path)
        if os.path.isdir(self.target):
            for entry in sorted(os.listdir(self.target)):
                if _is_temporary(entry) and any(entry.startswith(f".{self.name}{suffix}.") for suffix in OUTPUT_SUFFIXES):
                    _remove(os.path.join(self.target, entry))
                    self.removed.append(os.path.join(self.target, entry))
        for path in self.removed:
            logger.warning("removed %s, left by an interrupted conversion", path)

    def commit(self):
        """Carries the user's files over from the old folder and swaps the staged folder into place."""
        if os.path.isdir(self.target):
            for entry in sorted(os.listdir(self.target)):
                if _is_owned(entry, self.name) or _is_derived(entry, self.name) or _is_temporary(entry):
                    continue
                _link_or_copy(os.path.join(self.target, entry), os.path.join(self.path, entry))
                self.carried.append(entry)
            os.rename(self.target, self._old)
            os.rename(self.path, self.target)
            shutil.rmtree(self._old)
        else:
            os.rename(self.path, self.target)
        self.committed = True

    def __exit__(self, exc_type, exc, tb):
        try:
            if not self.committed and os.path.lexists(self.path):
                _remove(self.path)
        finally:
            self._release_lock()
        return False
