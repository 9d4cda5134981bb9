"""Where a command writes: ``dataset_converters.outputs`` (one line for an unwritable, under-a-file or full output),
re-exported for this package's writers (export, evaluate-summaries, checkpoints)."""
from dataset_converters.outputs import (OutputError, check_writable_folder, describe_os_error,  # noqa: F401
                                        naming, nearest_existing_path)
