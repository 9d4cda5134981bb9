"""Output locations that cannot be written are one line naming the path and what to do (export and
evaluate-summaries), before any checkpoint is loaded."""
import errno
import os

import pytest

from recbole_embsum.cli import main
from recbole_embsum.outputs import OutputError, check_writable_folder, describe_os_error


@pytest.fixture
def references(tmp_path):
    path = tmp_path / "references.jsonl"
    path.write_text("")
    return path


def commands(output, references):
    missing = str(output.parent / "never-read.pth")  # the output is checked before the checkpoint is read
    return {
        "export": ["export", "--checkpoint", missing, "--output", str(output)],
        "evaluate-summaries": ["evaluate-summaries", "--checkpoint", missing, "--references", str(references),
                               "--output", str(output)],
    }


@pytest.mark.parametrize("command", ["export", "evaluate-summaries"])
def test_output_path_under_a_file_is_one_line(tmp_path, references, command, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(commands(blocker / "out", references)[command]) in (1, 2)
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"--output {blocker / 'out'}: {blocker} is a file, not a folder; choose another --output")
    assert "\n" not in err and blocker.read_text() == "x"


@pytest.mark.parametrize("command", ["export", "evaluate-summaries"])
def test_read_only_output_folder_is_one_line(tmp_path, references, command, capsys, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    # The tests may run as root, whom permission bits do not stop: the folder reports itself read-only instead.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if os.fspath(path) == str(folder) else
                        real_access(path, mode))
    assert main(commands(folder / "new", references)[command]) in (1, 2)
    err = capsys.readouterr().err.strip()
    assert f"--output {folder / 'new'} (its nearest existing folder {folder}) is not writable" in err
    assert "\n" not in err and not (folder / "new").exists()


def test_os_errors_while_writing_name_the_file_and_the_remedy(tmp_path):
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "users-00003.safetensors"))
    assert describe_os_error(full) == (f"{tmp_path / 'users-00003.safetensors'}: No space left on device; the disk "
                                       f"is full; free some space or choose another --output, then rerun")
    denied = PermissionError(errno.EACCES, "Permission denied", "/x/rouge.json")
    assert describe_os_error(denied).startswith("/x/rouge.json: Permission denied; no permission to write there")
    assert describe_os_error(FileExistsError("out/rouge.json already exists; pass --overwrite")) == \
        "out/rouge.json already exists; pass --overwrite"
    check_writable_folder(tmp_path / "a" / "b")  # creatable: fine, and nothing is created
    assert not (tmp_path / "a").exists()
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputError):
        check_writable_folder(tmp_path / "f" / "x")
