"""Where a command writes: a folder that cannot be written is refused before any work, and an OS error while
writing (read-only folder, a path under a file, a full disk) becomes one line naming the file and what to do.

Shared by the converters and by recbole_embsum's writers (re-exported as ``recbole_embsum.outputs``); it lives here,
below both, so that converting imports neither torch nor RecBole. Writers create every file under a temporary name
and rename it into place (``dataset_converters.atomic.AtomicFile``), so a failed write leaves neither a partial file
nor a ``.tmp`` behind.
"""
import contextlib
import errno
import os

_ADVICE = {
    errno.ENOSPC: "the disk is full; free some space or choose another {option}, then rerun",
    errno.EDQUOT: "the disk quota is exhausted; free some space or choose another {option}, then rerun",
    errno.EFBIG: "the file is larger than this system allows; choose another {option}",
    errno.EACCES: "no permission to write there; choose another {option} or change its permissions",
    errno.EPERM: "no permission to write there; choose another {option} or change its permissions",
    errno.EROFS: "that file system is read-only; choose another {option}",
    errno.ENOTDIR: "a part of that path is a file, not a folder; choose another {option}",
    errno.EEXIST: "a file of that name is in the way; choose another {option}",
    errno.ENOENT: "check the path",
}


def nearest_existing_path(path):
    """`path` itself when it exists, else its nearest existing parent folder (or file): where a write would fail."""
    probe = os.path.abspath(os.fspath(path))
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    return probe


class OutputError(OSError):
    """An output location that cannot be written; the message is one line."""


def check_writable_folder(path, option="--output"):
    """Raise `OutputError` unless ``path`` is, or can be created as, a writable folder (nothing is created)."""
    path = os.path.abspath(os.fspath(path))
    probe = nearest_existing_path(path)
    if not os.path.isdir(probe):
        raise OutputError(errno.ENOTDIR, f"{option} {path}: {probe} is a file, not a folder; choose another {option}")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "" if probe == path else f" (its nearest existing folder {probe})"
        raise OutputError(errno.EACCES, f"{option} {path}{what} is not writable; choose another {option} or change "
                                        f"its permissions")


def describe_os_error(err, option="--output"):
    """One line for an ``OSError`` raised while writing: the file, the system's reason and what to do."""
    if isinstance(err, OutputError) or err.errno is None:  # ours, or raised with a message of its own
        return str(err.strerror if isinstance(err, OutputError) else err)
    where = err.filename or "the output"
    reason = err.strerror or str(err)
    advice = _ADVICE.get(err.errno, "check that {option} can be written, then rerun").format(option=option)
    return f"{where}: {reason}; {advice}"


def describe_output_error(err, path, option="--output"):
    """`describe_os_error`, naming `path` when the error names no file (a failed write, e.g. a full disk)."""
    if err.filename is None and err.errno is not None and not isinstance(err, OutputError):
        err = OSError(err.errno, err.strerror, os.fspath(path))
    return describe_os_error(err, option)


@contextlib.contextmanager
def naming(path):
    """Give an ``OSError`` raised inside the block without a file name (a failed write: ``ENOSPC``) ``path``."""
    try:
        yield
    except OSError as err:
        if err.filename is None and err.errno is not None:
            raise OSError(err.errno, err.strerror, os.fspath(path)) from err
        raise
