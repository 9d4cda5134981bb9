"""MIND (Wu et al. 2020; small, large or demo) -> RecBole atomic files, following docs/design.md.

Input layouts (`--input DIR`), one of:
  * `MIND<variant>_train/`, `MIND<variant>_dev/` and optionally `MIND<variant>_test/` folders (e.g. MINDsmall_train),
  * the same names as downloaded `.zip` files (members are read directly, nothing is extracted),
  * `train/`, `dev/` and optionally `test/` folders.
Each split holds `news.tsv` (news_id, category, subcategory, title, abstract, url, title_entities,
abstract_entities) and `behaviors.tsv` (impression_id, user_id, time `11/15/2019 8:55:22 AM`, history oldest first,
impressions `N1-1 N2-0`; the MIND-large test split has bare ids and no labels).

Rules:
  * MIND train -> `<name>.train.inter`; MIND dev -> `<name>.valid.inter` or `<name>.test.inter`: an impression goes to
    valid when `crc32(key) mod 10000 < valid_fraction * 10000` (default 0.1, the paper's Table 4: 10,775 of MIND-small
    dev's 111,383 positives are in its dev set), else to test; the key is the raw impression id (`valid_by
    impression`, the default), or the user id (`valid_by user`: valid and test users do not overlap);
    MIND test -> `<name>.predict.inter` (label 0).
  * `impression_id` in the output is `<raw split>-<raw id>` (e.g. `dev-17`): raw ids repeat across splits, never
    within one file: a repeated id stops the conversion with the file and line (a bad line for `--skip-bad-lines`),
    since merging two impressions would be wrong and renaming one would break the link to the raw id.
  * `timestamp` = the behaviors time read as UTC, in Unix seconds.
  * `item_id_list` = the behaviors History column (oldest first), the most recent `history_len` kept.
  * Ids missing from every news.tsv are counted in the stats and dropped: from a history, the id is removed; from an
    impression, the candidate is removed; an impression left without candidates (or, in train, without a click)
    writes no row and is counted as dropped.
  * Items: every news id of every split's news.tsv, first occurrence wins, in file order. A news item with title or
    abstract entities gets `title_entities` / `abstract_entities` (lists of WikiData ids) in `.text.jsonl`.
  * Entity vectors: the splits' `entity_embedding.vec` files (when present) are merged into
    `<name>.entity_embedding.vec` (tab separated id and numbers; first occurrence of an id wins).
Everything is streamed line by line; only the set of news ids and the per-split counters stay in memory.
"""
import datetime
import json
import logging
import os
import re
import sys
import zlib

from .atomic import AtomicFile
from .impressions import ImpressionWriter, add_common_arguments, converter_main, options_from_args, run_conversion
from .reading import BadLineError, LineErrors, Source, open_zip, split_columns

logger = logging.getLogger(__name__)

NEWS_COLUMNS = ("news_id", "category", "subcategory", "title", "abstract", "url", "title_entities",
                "abstract_entities")
ENTITY_FIELDS = ("title_entities", "abstract_entities")  # kept in .text.jsonl as WikiData id lists (when present)
ENTITY_VECTORS = "entity_embedding.vec"  # MIND's TransE entity vectors, merged into <name>.entity_embedding.vec
BEHAVIOR_COLUMNS = ("impression_id", "user_id", "time", "history", "impressions")
RAW_SPLITS = ("train", "dev", "test")
VALID_BY = ("impression", "user")
# Why an impression writes no row (stats `dropped_reasons`).
UNKNOWN_CLICKS = "no click left after removing ids missing from news.tsv"
UNKNOWN_CANDIDATES = "no candidate left after removing ids missing from news.tsv"
_SPLIT_NAME = re.compile(r"^MIND(?P<variant>[A-Za-z0-9]+)_(?P<split>train|dev|test)(?P<zip>\.zip)?$")
_UTC = datetime.timezone.utc


# -- finding the files ---------------------------------------------------------------------------------------------
def _zip_member(path, basename):
    with open_zip(path) as archive:
        members = [m for m in archive.namelist() if os.path.basename(m) == basename]
    if len(members) != 1:
        raise FileNotFoundError(f"{path}: expected exactly one member named {basename}, found {members}")
    return Source(path, members[0])


def find_splits(input_dir, variant=None):
    """`{raw split: (news Source, behaviors Source)}` for the layouts above; train and dev are required."""
    input_dir = os.fspath(input_dir)
    if not os.path.isdir(input_dir):
        raise FileNotFoundError(f"MIND input folder {input_dir} does not exist")
    found = {}  # (variant, split) -> path; a folder wins over a zip of the same name
    for entry in sorted(os.listdir(input_dir)):
        path = os.path.join(input_dir, entry)
        match = _SPLIT_NAME.match(entry)
        if entry in RAW_SPLITS and os.path.isdir(path):
            key = ("", entry)
        elif match and (os.path.isdir(path) or (match["zip"] and os.path.isfile(path))):
            key = (match["variant"], match["split"])
        else:
            continue
        if key not in found or os.path.isdir(path):
            found[key] = path
    variants = sorted({v for v, _ in found})
    if variant is not None:
        variants = [v for v in variants if v == variant]
    if not variants:
        where = f" for --variant {variant}" if variant is not None else ""
        raise FileNotFoundError(
            f"{input_dir}: no MIND files found{where}; looked for MIND<variant>_train/ and MIND<variant>_dev/ folders "
            f"(or .zip files, e.g. MINDsmall_train.zip) or train/ and dev/ folders, each with news.tsv and "
            f"behaviors.tsv")
    if len(variants) != 1:
        raise FileNotFoundError(
            f"{input_dir}: holds several MIND variants ({', '.join(v or 'plain train/dev' for v in variants)}); "
            f"choose one with --variant")
    chosen = variants[0]
    splits = {}
    for split in RAW_SPLITS:
        path = found.get((chosen, split))
        if path is None:
            continue
        if os.path.isdir(path):
            sources = tuple(Source(os.path.join(path, f)) for f in ("news.tsv", "behaviors.tsv"))
            for source in sources:
                if not os.path.isfile(source.path):
                    raise FileNotFoundError(f"{source.path} is missing")
        else:
            sources = (_zip_member(path, "news.tsv"), _zip_member(path, "behaviors.tsv"))
        splits[split] = sources
    for required in ("train", "dev"):
        if required not in splits:
            raise FileNotFoundError(f"{input_dir}: no MIND {required} split found (variant {chosen or 'plain'})")
    return splits


# -- parsing -------------------------------------------------------------------------------------------------------
def parse_time(text):
    """`11/15/2019 8:55:22 AM` (read as UTC) -> Unix seconds; ValueError when malformed."""
    date, clock, half = text.split(" ")
    month, day, year = (int(x) for x in date.split("/"))
    hour, minute, second = (int(x) for x in clock.split(":"))
    if half not in ("AM", "PM") or not 1 <= hour <= 12:
        raise ValueError("expected a 12-hour clock with AM/PM")
    hour = hour % 12 + (12 if half == "PM" else 0)
    return datetime.datetime(year, month, day, hour, minute, second, tzinfo=_UTC).timestamp()


def parse_entities(label, line_no, field, text):
    """WikiData ids of a news.tsv entity column (a JSON list of objects with `WikidataId`; empty -> [])."""
    if not text.strip():
        return []
    try:
        entities = json.loads(text)
        return [str(entity["WikidataId"]) for entity in entities]
    except (ValueError, TypeError, KeyError) as error:
        raise BadLineError(label, line_no, field, f"expected a JSON list of objects with 'WikidataId' "
                                                  f"({type(error).__name__}: {error})") from None


def parse_news(label, line_no, text):
    """-> (news_id, category, subcategory, title, abstract, extra text fields: entity ids when there are any)."""
    columns = split_columns(label, line_no, text, NEWS_COLUMNS)
    news_id = columns[0]
    if not news_id or news_id != news_id.strip() or " " in news_id:
        raise BadLineError(label, line_no, "news_id", f"empty or contains spaces: {news_id!r}")
    entities = {field: parse_entities(label, line_no, field, columns[NEWS_COLUMNS.index(field)])
                for field in ENTITY_FIELDS}
    return (*columns[:5], entities if any(entities.values()) else {})


def parse_entity_vector(label, line_no, text):
    """A line of MIND's entity_embedding.vec (`Q123<TAB>v_1<TAB>...`) -> (id, numbers as written)."""
    fields = text.split()
    try:
        [float(value) for value in fields[1:]]
    except ValueError as error:
        raise BadLineError(label, line_no, "vector", str(error)) from None
    if len(fields) < 2:
        raise BadLineError(label, line_no, "vector", "expected an entity id and its numbers")
    return fields[0], fields[1:]


def entity_vector_sources(splits):
    """The `entity_embedding.vec` beside each split's news.tsv (folder or zip member), where there is one."""
    sources = []
    for news, _ in splits.values():
        if news.member is None:
            path = os.path.join(os.path.dirname(news.path), ENTITY_VECTORS)
            if os.path.isfile(path):
                sources.append(Source(path))
        else:
            with open_zip(news.path) as archive:
                members = [m for m in archive.namelist() if os.path.basename(m) == ENTITY_VECTORS]
            sources += [Source(news.path, member) for member in members[:1]]
    return sources


def write_entity_vectors(sources, path, errors):
    """Merge the splits' entity vectors into one file (first occurrence of an id wins); returns the entity count."""
    seen = set()
    with AtomicFile(path) as handle:
        for source in sources:
            for entity, vector in errors.parse(source, source.lines(source.label), parse_entity_vector):
                if entity not in seen:
                    seen.add(entity)
                    handle.write("\t".join([entity, *vector]) + "\n")
    return len(seen)


def parse_behavior(label, line_no, text, labeled):
    """-> (impression_id, user_id, timestamp, history ids, [(news id, label)]); label is None when unlabeled."""
    impression_id, user_id, time_text, history, impressions = split_columns(label, line_no, text, BEHAVIOR_COLUMNS)
    if not impression_id or not user_id:
        raise BadLineError(label, line_no, "impression_id" if not impression_id else "user_id", "empty")
    try:
        timestamp = parse_time(time_text)
    except ValueError as error:
        raise BadLineError(label, line_no, "time",
                           f"cannot parse {time_text!r} as 'M/D/YYYY H:MM:SS AM' ({error})") from None
    candidates = []
    for token in impressions.split():
        news_id, dash, flag = token.rpartition("-")
        if labeled:
            if not dash or flag not in ("0", "1") or not news_id:
                raise BadLineError(label, line_no, "impressions", f"bad token {token!r}: expected <news_id>-0 or -1")
            candidates.append((news_id, flag == "1"))
        else:  # MIND-large test: bare ids (a label suffix, if any, is ignored)
            candidates.append((news_id if dash and flag in ("0", "1") else token, None))
    if not candidates:
        raise BadLineError(label, line_no, "impressions", "no candidates")
    return impression_id, user_id, timestamp, history.split(), candidates


# -- conversion ----------------------------------------------------------------------------------------------------
def in_valid(key, valid_fraction):
    """The documented dev -> valid/test rule: a hash of the raw impression id (or of the user id)."""
    return zlib.crc32(key.encode("utf-8")) % 10000 < round(valid_fraction * 10000)


class SeenIds:
    """Raw impression ids met so far in one file: a bitmap for MIND's small integer ids, a set for anything else."""

    _BITMAP_LIMIT = 1 << 28  # ids below this use at most 32 MiB of bitmap

    def __init__(self):
        self._bits = bytearray()
        self._other = set()

    def add(self, raw_id):
        """True when `raw_id` is new (and records it), False when it was seen before."""
        if raw_id.isdigit() and raw_id.isascii() and len(raw_id) < 10 and int(raw_id) < self._BITMAP_LIMIT \
                and raw_id == str(int(raw_id)):
            number = int(raw_id)
            byte, bit = divmod(number, 8)
            if byte >= len(self._bits):
                self._bits.extend(bytes(max(byte + 1 - len(self._bits), len(self._bits))))
            if self._bits[byte] >> bit & 1:
                return False
            self._bits[byte] |= 1 << bit
            return True
        if raw_id in self._other:
            return False
        self._other.add(raw_id)
        return True


def _known(ids, known, unknown, kind):
    """`ids` without the ones missing from news.tsv, each of which is counted."""
    kept = []
    for news_id in ids:
        if news_id in known:
            kept.append(news_id)
        else:
            unknown.add(kind, news_id)
    return kept


def convert_mind(input_dir, output, options, valid_fraction=0.1, variant=None, valid_by="impression"):
    """Converts a MIND folder into `<output>/<options.name>/`; returns the stats report (also written as JSON)."""
    if not 0.0 <= valid_fraction <= 1.0:
        raise ValueError(f"--valid-fraction must be in [0, 1], got {valid_fraction}")
    if valid_by not in VALID_BY:
        raise ValueError(f"--valid-by must be one of {', '.join(VALID_BY)}, got {valid_by!r}")
    splits = find_splits(input_dir, variant)
    errors = LineErrors(options.skip_bad_lines)
    with ImpressionWriter(output, options, source="mind") as writer:
        key = "impression_id" if valid_by == "impression" else "user_id"
        writer.stats.notes["split_rule"] = (f"MIND dev impression -> valid if crc32({key}) % 10000 < "
                                            f"{round(valid_fraction * 10000)}, else test")
        known = set()
        for split, (news, _) in splits.items():
            for news_id, category, subcategory, title, abstract, entities in errors.parse(
                    news, news.lines(f"{split} news"), parse_news):
                if news_id not in known:
                    known.add(news_id)
                    writer.item(news_id, title, abstract, category, subcategory, **entities)
        vector_sources = entity_vector_sources(splits)
        if vector_sources:
            writer.stats.notes["entities"] = write_entity_vectors(
                vector_sources, writer.path(".entity_embedding.vec"), errors)
        unknown = writer.stats.unknown
        for split, (_, behaviors) in splits.items():
            labeled = split != "test"
            seen_ids = SeenIds()

            def parse(label, line_no, text):
                parsed = parse_behavior(label, line_no, text, labeled)
                if not seen_ids.add(parsed[0]):
                    raise BadLineError(label, line_no, "impression_id",
                                       f"{parsed[0]!r} repeats the id of an earlier line; each impression needs its "
                                       f"own id (was the file concatenated or edited?)")
                return parsed

            for raw_id, user, timestamp, history, candidates in errors.parse(
                    behaviors, behaviors.lines(f"{split} behaviors"), parse):
                impression_id = f"{split}-{raw_id}"
                history = _known(history, known, unknown, "history")
                kept = [(news_id, flag) for news_id, flag in candidates if news_id in known]
                _known((news_id for news_id, _ in candidates), known, unknown, "candidate")
                if split == "train":
                    clicks = [(news_id, timestamp, history) for news_id, flag in kept if flag]
                    if not clicks:
                        writer.drop_impression("train", UNKNOWN_CLICKS)
                        continue
                    writer.train_impression(impression_id, user, clicks,
                                            [news_id for news_id, flag in kept if not flag],
                                            seen=[news_id for news_id, _ in kept])
                    continue
                out_split = "predict" if split == "test" else (
                    "valid" if in_valid(raw_id if valid_by == "impression" else user, valid_fraction) else "test")
                if not kept:
                    writer.drop_impression(out_split, UNKNOWN_CANDIDATES)
                    continue
                writer.eval_impression(out_split, impression_id, user, history,
                                       [(news_id, bool(flag), timestamp) for news_id, flag in kept])
        report = writer.finish(errors.summary(), {
            "items": " and ".join(news.label for news, _ in splits.values()),
            "train": splits["train"][1].label, "valid": splits["dev"][1].label, "test": splits["dev"][1].label})
    return report


def add_arguments(parser):
    """Flags of `convert mind` (also `python -m dataset_converters.mind`)."""
    add_common_arguments(parser, default_name="mind")
    parser.add_argument("--valid-fraction", type=float, default=0.1,
                        help="share of MIND dev impressions (by a hash, see --valid-by) that go to valid, the rest to "
                             "test; 0.1 matches the paper's Table 4 (default: %(default)s)")
    parser.add_argument("--valid-by", choices=VALID_BY, default="impression",
                        help="hash the impression id (as the paper's Table 4 counts imply) or the user id (valid and "
                             "test users disjoint) to split MIND dev (default: %(default)s)")
    parser.add_argument("--variant", default=None,
                        help="which MIND<variant>_* files to use when the folder holds several (e.g. small, large)")
    parser.set_defaults(func=run)


def run(args):
    return run_conversion(lambda: convert_mind(args.input, args.output, options_from_args(args), args.valid_fraction,
                                               args.variant, args.valid_by), args.output, args.name)


def main(argv=None):
    return converter_main("mind", argv)


if __name__ == "__main__":
    sys.exit(main())
