"""The on-disk format of exported poly-embeddings: one folder, memory-mappable safetensors shards plus JSON.

::

    DIR/
      plan.json                what is being exported, written first: format version, source checkpoint, sizes,
                               storage dtype, rows per shard, and the ordered raw ids ("items", "users")
      items-00000.safetensors  "poly" [rows, n, d]: CPE B of each item (Section 2.4)
                               "keys" [rows, n, d]: gelu(B W^s), the item side of Eq. (4), precomputed
      users-00000.safetensors  "poly" [rows, m, d]: UPE A of each user (Eq. (2))
      scorer.safetensors       "w_s" [d, d]: W^s of Eq. (4), as the weight of ``nn.Linear(d, d, bias=False)``
      summaries.jsonl          optional (``--summaries``): one generated interest summary per user, in the format of
                               ``recbole_embsum.summaries.store`` (backend "embsum")
      manifest.json            written last: the shard files, row counts and the plan's hash; its presence means
                               the export is complete

Row ``r`` of shard ``s`` of a section holds the embedding of raw id ``plan[section][s * shard_rows + r]``.
Every shard's safetensors metadata repeats ``plan_hash``, ``section`` and ``start`` (first row), and user shards of
an export with summaries carry them as a JSON list in ``summaries``, so an interrupted export resumes shard by shard.
Every file is written to a temporary name in DIR and renamed into place; a reader that finds ``manifest.json`` never
sees a partial file. Tensors can be read slice by slice without loading a shard
(``safetensors.safe_open(...).get_slice("keys")[a:b]``), which is how scoring streams millions of candidates.

Sharded export: ``N`` workers (torch.distributed ranks, or independent processes or machines sharing DIR) each
write the shards whose index (per section) modulo ``N`` is their worker index. The plan is deterministic, so every
worker writes the same ``plan.json`` (atomically; the last rename wins with identical bytes); whichever run finds
every shard present writes ``scorer.safetensors``, ``summaries.jsonl`` and ``manifest.json`` (a final unsharded run
over DIR, which only resumes, does it as well).
"""
import contextlib
import hashlib
import json

from dataset_converters.atomic import AtomicFile
from recbole_embsum.outputs import naming

FORMAT = "recbole-embsum/poly-embeddings"
VERSION = 1
PLAN_FILE = "plan.json"
MANIFEST_FILE = "manifest.json"
SCORER_FILE = "scorer.safetensors"
SUMMARIES_FILE = "summaries.jsonl"
SECTIONS = ("items", "users")
DTYPES = ("float32", "float16", "bfloat16")


class ExportFormatError(ValueError):
    """An export folder that is missing files, is incomplete, or belongs to another export."""


def shard_name(section, index):
    """``items-00000.safetensors`` for the first item shard."""
    return f"{section}-{index:05d}.safetensors"


def shard_bounds(count, shard_rows):
    """``[(start, stop), ...]`` row ranges of the shards of a section with ``count`` rows."""
    return [(start, min(start + shard_rows, count)) for start in range(0, count, shard_rows)]


def plan_hash(plan):
    """A short content hash of a plan (canonical JSON), stamped into every shard and the manifest."""
    canonical = json.dumps(plan, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def save_tensors_atomic(path, tensors, metadata=None):
    """Write ``tensors`` as a safetensors file at ``path`` atomically (temporary file, then rename), with the same
    permissions as every other file of the export (``AtomicFile``: the umask's, not mkstemp's 0600)."""
    from safetensors.torch import save  # torch: imported only when writing (the CLI's --help reads DTYPES)

    data = save({name: tensor.contiguous() for name, tensor in tensors.items()}, metadata=metadata)
    with naming(path), AtomicFile(path, binary=True) as handle:
        handle.write(data)


def read_json(path, what):
    """Load a JSON file of an export folder; a missing or malformed file is an :class:`ExportFormatError`."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise ExportFormatError(f"{path}: missing ({what})") from None
    except json.JSONDecodeError as err:
        raise ExportFormatError(f"{path}, line {err.lineno}: not valid JSON ({err.msg})") from None


@contextlib.contextmanager
def open_tensors(path):
    """``safetensors.safe_open(path)``; a missing, truncated or foreign file is an :class:`ExportFormatError`."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as handle:
            yield handle
    except (SafetensorError, OSError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportFormatError(f"{path}: not a readable safetensors file, truncated or corrupt ({reason}); rerun "
                                f"the export into a new folder (or with --overwrite)") from None
