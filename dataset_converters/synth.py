"""Synthetic MIND and Goodreads data, written in exactly the published raw formats, with planted structure.

The generator (`World`) has topics with their own vocabularies; every item belongs to one topic and its title and
abstract/description mostly use that topic's words. Every user has one or two latent topic interests; histories and
clicks (MIND) or high ratings (Goodreads) come mostly from those topics, while impressions sample candidates uniformly
from all items, so item popularity alone does not explain clicks but a content model can learn them. Texts include
double quotes (some titles start with one), apostrophes and non-ASCII words, never tabs or newlines (the raw TSV
format has no quoting).

    recbole-embsum synth mind --output DIR [--users 200 --items 300 --seed 0]
    recbole-embsum synth goodreads --output DIR [...]

Files already in `--output` under the names it writes are refused unless `--overwrite` (they may be real data).
"""
import datetime
import gzip
import json
import os
import random
import sys

from tqdm import tqdm

from .atomic import AtomicFile
from .outputs import describe_output_error

# MIND-like topics: category -> words that reveal it (a few non-ASCII on purpose).
NEWS_TOPICS = {
    "sports": ["goal", "coach", "season", "playoff", "striker", "quarterback", "league", "stadium", "champion",
               "referee", "transfer", "Müller"],
    "finance": ["stocks", "market", "investors", "earnings", "inflation", "bank", "dividend", "bonds", "economy",
                "shares", "budget", "€"],
    "health": ["doctors", "vaccine", "diet", "sleep", "heart", "study", "symptoms", "fitness", "hospital",
               "protein", "nutrition", "naïve"],
    "travel": ["flight", "airport", "hotel", "beach", "cruise", "passport", "island", "Zürich", "café", "resort",
               "luggage", "itinerary"],
    "music": ["album", "concert", "singer", "guitar", "chart", "tour", "Beyoncé", "lyrics", "festival", "band",
              "vinyl", "grammy"],
    "science": ["planet", "telescope", "species", "fossil", "climate", "quantum", "NASA", "genome", "galaxy",
                "volcano", "robot", "molecule"],
}
# Goodreads-like topics: genre label as in goodreads_book_genres_initial.json -> words.
BOOK_TOPICS = {
    "fantasy, paranormal": ["dragon", "wizard", "kingdom", "sword", "magic", "prophecy", "elf", "curse", "realm",
                            "sorceress", "quest", "Ævar"],
    "mystery, thriller, crime": ["detective", "murder", "clue", "suspect", "alibi", "heist", "witness", "motive",
                                 "inspector", "crime", "evidence", "Poirot"],
    "romance": ["love", "wedding", "heart", "kiss", "duke", "passion", "summer", "letters", "bride", "flirt",
                "promise", "amour"],
    "history, historical fiction, biography": ["empire", "war", "revolution", "queen", "century", "memoir",
                                               "dynasty", "battle", "biography", "pharaoh", "treaty", "Napoléon"],
    "poetry": ["verses", "sonnet", "poems", "rhyme", "stanza", "haiku", "elegy", "ode", "lyric", "muse", "ballad",
               "Rilke"],
}
GENERIC_WORDS = ["the", "a", "new", "how", "why", "best", "after", "report", "week", "today", "people", "says",
                 "first", "year", "big", "look", "what", "you", "this", "one", "inside", "more", "it's", "why"]
MIND_SUBCATEGORIES = 3
_MIND_TRAIN_START = datetime.datetime(2019, 11, 9, tzinfo=datetime.timezone.utc)
_MIND_DEV_START = datetime.datetime(2019, 11, 15, tzinfo=datetime.timezone.utc)
_MIND_TEST_START = datetime.datetime(2019, 11, 16, tzinfo=datetime.timezone.utc)
_GOODREADS_START = datetime.datetime(2012, 1, 1, tzinfo=datetime.timezone.utc)
_GOODREADS_SPAN_DAYS = 5 * 365
_TIMEZONES = ["-0700", "-0800", "-0400", "-0500", "+0100", "+0000"]


class World:
    """Topics, items and users with latent interests; every draw comes from one seeded `random.Random`."""

    def __init__(self, topics, users, items, seed, history_mean=22, new_user_share=0.1):
        self.rng = random.Random(seed)
        self.topics = topics
        self.topic_names = list(topics)
        self.item_topic = [self.rng.randrange(len(topics)) for _ in range(items)]
        self.items_by_topic = [[] for _ in topics]
        for item, topic in enumerate(self.item_topic):
            self.items_by_topic[topic].append(item)
        filled = [topic for topic, members in enumerate(self.items_by_topic) if members]  # few items: some are empty
        self.interests = [self.rng.sample(filled, min(len(filled), self.rng.choice((1, 1, 2)))) for _ in range(users)]
        self.history_mean = history_mean
        self.new_users = set(range(users - int(round(users * new_user_share)), users))

    def likes(self, user, item):
        return self.item_topic[item] in self.interests[user]

    def text(self, topic, low, high, quote_rate=0.15):
        """A title-like string: mostly topic words, some generic ones, sometimes a quoted phrase (maybe leading)."""
        rng = self.rng
        words = [rng.choice(self.topics[self.topic_names[topic]]) if rng.random() < 0.6 else rng.choice(GENERIC_WORDS)
                 for _ in range(rng.randint(low, high))]
        if rng.random() < quote_rate and len(words) >= 3:
            start = rng.randrange(0, len(words) - 1)
            words[start] = '"' + words[start]
            words[start + 1] = words[start + 1] + '"'
        words[0] = words[0][:1].upper() + words[0][1:]
        return " ".join(words)

    def interest_item(self, user):
        return self.rng.choice(self.items_by_topic[self.rng.choice(self.interests[user])])

    def history(self, user):
        """Pre-period engagement, oldest first: mostly interest items; ~8% of users have none."""
        rng = self.rng
        if rng.random() < 0.08:
            return []
        length = rng.randint(1, 2 * self.history_mean - 1)
        return [self.interest_item(user) if rng.random() < 0.85 else rng.randrange(len(self.item_topic))
                for _ in range(length)]


def _write_lines(path, lines, compress=False):
    """Writes text lines atomically (gzip with a fixed mtime when `compress`, so output bytes are reproducible)."""
    if not compress:
        with AtomicFile(path) as handle:
            for line in lines:
                handle.write(line + "\n")
        return
    with AtomicFile(path, binary=True) as handle:
        with gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0) as gz:
            for line in lines:
                gz.write((line + "\n").encode("utf-8"))


def _mind_time(moment):
    """`11/15/2019 8:55:22 AM`, MIND's behaviors time format."""
    hour = moment.hour % 12 or 12
    half = "AM" if moment.hour < 12 else "PM"
    return f"{moment.month}/{moment.day}/{moment.year} {hour}:{moment.minute:02d}:{moment.second:02d} {half}"


def _check_sizes(users, items, history_mean, candidates=2):
    for flag, value, low in (("--users", users, 1), ("--items", items, 1), ("--history-mean", history_mean, 1),
                             ("--candidates", candidates, 2)):
        if value < low:
            raise ValueError(f"{flag} must be at least {low}, got {value}")


def _refuse_existing(paths, overwrite):
    """Refuses to replace files that are already there (they may be real raw data) unless `overwrite`."""
    present = [path for path in paths if os.path.lexists(path)]
    if present and not overwrite:
        raise FileExistsError(f"{', '.join(present)} already exist{'s' if len(present) == 1 else ''}; synth would "
                              f"replace {'it' if len(present) == 1 else 'them'}: pass --overwrite or choose another "
                              f"--output")


def mind_paths(output, test=False, variant="small"):
    """The files `synth_mind` writes: `{raw split: (news.tsv, behaviors.tsv)}`."""
    splits = ("train", "dev", "test") if test else ("train", "dev")
    return {split: tuple(os.path.join(os.fspath(output), f"MIND{variant}_{split}", name)
                         for name in ("news.tsv", "behaviors.tsv")) for split in splits}


def synth_mind(output, users=200, items=300, seed=0, candidates=15, history_mean=22, test=False, variant="small",
               overwrite=False, dev_share=1.0):
    """Writes `MIND<variant>_train/` and `MIND<variant>_dev/` (and `_test/`, unlabeled, when `test`) under `output`.

    Users get 1-3 train impressions and 0-2 dev impressions (only a random `dev_share` of them get dev impressions:
    MIND-large has 6x more train than dev impressions, MIND-small 2x); the last 10% of users appear only in dev
    (new users).
    Candidates are drawn uniformly; an interest item is clicked with probability 0.5, any other with 0.02, and every
    impression has at least one click. Returns `{raw split: folder}`. Existing files are refused unless `overwrite`.
    """
    _check_sizes(users, items, history_mean, candidates)
    _refuse_existing([path for pair in mind_paths(output, test, variant).values() for path in pair], overwrite)
    world = World(NEWS_TOPICS, users, items, seed, history_mean)
    rng = world.rng
    news_ids = [f"N{10000 + i}" for i in range(items)]
    subcategory = [f"{world.topic_names[t]}_{rng.randrange(MIND_SUBCATEGORIES)}" for t in world.item_topic]
    titles = [world.text(t, 5, 12) for t in world.item_topic]
    abstracts = ["" if rng.random() < 0.05 else world.text(t, 12, 30, quote_rate=0.1) for t in world.item_topic]
    histories = [world.history(u) for u in range(users)]
    plan = [("train", _MIND_TRAIN_START, 6), ("dev", _MIND_DEV_START, 1)] + (
        [("test", _MIND_TEST_START, 1)] if test else [])
    folders = {}
    for split, start, days in plan:
        behaviors, used = [], set()
        for user in tqdm(range(users), desc=f"synth mind {split}", disable=None):
            if split == "train" and user in world.new_users:
                count = 0
            elif split != "train" and dev_share < 1.0 and rng.random() >= dev_share:
                count = 0
            else:
                count = rng.randint(1, 3) if split == "train" else rng.randint(0, 2)
            for _ in range(count):
                moment = start + datetime.timedelta(seconds=rng.randrange(days * 86400))
                shown = rng.sample(range(items), min(items, rng.randint(max(2, candidates // 2), candidates * 3 // 2)))
                clicks = [rng.random() < (0.5 if world.likes(user, i) else 0.02) for i in shown]
                if not any(clicks):
                    pick = world.interest_item(user)
                    if pick in shown:
                        clicks[shown.index(pick)] = True
                    else:
                        shown[0], clicks[0] = pick, True
                used.update(shown)
                used.update(histories[user])
                tokens = [news_ids[i] if split == "test" else f"{news_ids[i]}-{int(c)}" for i, c in zip(shown, clicks)]
                behaviors.append((len(behaviors) + 1, f"U{user + 1}", _mind_time(moment),
                                  " ".join(news_ids[i] for i in histories[user]), " ".join(tokens)))
        folder = os.path.join(os.fspath(output), f"MIND{variant}_{split}")
        os.makedirs(folder, exist_ok=True)
        _write_lines(os.path.join(folder, "behaviors.tsv"), ("\t".join(map(str, row)) for row in behaviors))
        _write_lines(os.path.join(folder, "news.tsv"), (
            "\t".join((news_ids[i], world.topic_names[world.item_topic[i]], subcategory[i], titles[i], abstracts[i],
                       f"https://assets.msn.com/labs/mind/AA{i:06d}.html", "[]", "[]"))
            for i in sorted(used)))
        folders[split] = folder
    return folders


def _goodreads_date(moment, zone):
    """`Mon Aug 01 13:41:57 -0700 2011`, Goodreads' date format (English names regardless of locale)."""
    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    return (f"{days[moment.weekday()]} {months[moment.month - 1]} {moment.day:02d} "
            f"{moment:%H:%M:%S} {zone} {moment.year}")


GOODREADS_FILES = ("goodreads_books_synthetic.json.gz", "goodreads_interactions_synthetic.json.gz",
                   "goodreads_book_genres_initial.json.gz")


def synth_goodreads(output, users=200, items=300, seed=0, history_mean=22, genre_file=True, overwrite=False):
    """Writes `goodreads_books_synthetic.json.gz`, `goodreads_interactions_synthetic.json.gz` and (when
    `genre_file`) `goodreads_book_genres_initial.json.gz` under `output`.

    Each user rates `1..2*history_mean` books over five years, 60% from their interest genres; interest books get
    mostly 4-5 stars, other books mostly 1-2; some ratings are 3 or 0 (shelved, not rated), which the converter drops.
    Returns the list of written paths. Existing files are refused unless `overwrite`.
    """
    _check_sizes(users, items, history_mean)
    paths = [os.path.join(os.fspath(output), name) for name in GOODREADS_FILES[:3 if genre_file else 2]]
    _refuse_existing(paths, overwrite)
    world = World(BOOK_TOPICS, users, items, seed, history_mean)
    rng = world.rng
    os.makedirs(output, exist_ok=True)
    book_ids = [str(1000 + 7 * i) for i in range(items)]
    books, genres = [], []
    for i, topic in enumerate(world.item_topic):
        genre = world.topic_names[topic]
        title = world.text(topic, 2, 7)
        other = world.topic_names[(topic + 1 + rng.randrange(len(world.topic_names) - 1)) % len(world.topic_names)]
        books.append(json.dumps({
            "isbn": "", "text_reviews_count": str(rng.randint(0, 50)), "series": [], "country_code": "US",
            "language_code": "eng", "popular_shelves": [{"count": str(rng.randint(5, 90)), "name": "to-read"},
                                                        {"count": str(rng.randint(1, 30)), "name": genre.split(",")[0]}],
            "asin": "", "is_ebook": "false", "average_rating": f"{rng.uniform(3, 4.8):.2f}", "kindle_asin": "",
            "similar_books": [], "description": world.text(topic, 30, 90, quote_rate=0.3), "format": "Paperback",
            "link": f"https://www.goodreads.com/book/show/{book_ids[i]}", "authors": [
                {"author_id": str(500 + i % 97), "role": ""}], "publisher": "", "num_pages": str(rng.randint(40, 600)),
            "publication_day": "", "isbn13": "", "publication_month": "", "edition_information": "",
            "publication_year": str(rng.randint(1950, 2017)), "url": f"https://www.goodreads.com/book/show/{book_ids[i]}",
            "image_url": "", "book_id": book_ids[i], "ratings_count": str(rng.randint(0, 900)),
            "work_id": str(90000 + i), "title": title, "title_without_series": title}, ensure_ascii=True))
        genres.append(json.dumps({"book_id": book_ids[i], "genres": {genre: rng.randint(20, 200),
                                                                     other: rng.randint(1, 19)}}))
    interactions = []
    for user in tqdm(range(users), desc="synth goodreads", disable=None):
        user_id = f"{rng.getrandbits(128):032x}"
        for _ in range(rng.randint(1, 2 * history_mean)):
            book = world.interest_item(user) if rng.random() < 0.6 else rng.randrange(items)
            pool = (5, 5, 4, 4, 4, 4, 3, 0) if world.likes(user, book) else (1, 2, 2, 1, 3, 0, 2, 4)
            rating = rng.choice(pool)
            added = _GOODREADS_START + datetime.timedelta(seconds=rng.randrange(_GOODREADS_SPAN_DAYS * 86400))
            updated = added + datetime.timedelta(seconds=rng.randrange(30 * 86400))
            zone = rng.choice(_TIMEZONES)
            interactions.append(json.dumps({
                "user_id": user_id, "book_id": book_ids[book], "review_id": f"{rng.getrandbits(128):032x}",
                "is_read": rating > 0, "rating": rating, "review_text_incomplete": "",
                "date_added": _goodreads_date(added, zone), "date_updated": _goodreads_date(updated, zone),
                "read_at": "", "started_at": ""}))
    _write_lines(paths[0], books, compress=True)
    _write_lines(paths[1], interactions, compress=True)
    if genre_file:
        _write_lines(paths[2], genres, compress=True)
    return paths


def add_arguments(parser):
    """`synth mind|goodreads --output DIR [--users --items --seed]`."""
    parser.add_argument("dataset", choices=("mind", "goodreads"))
    parser.add_argument("--output", required=True, help="folder for the raw files")
    parser.add_argument("--users", type=int, default=200, help="number of users (default: %(default)s)")
    parser.add_argument("--items", type=int, default=300, help="number of news / books (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default: %(default)s)")
    parser.add_argument("--history-mean", type=int, default=22, help="average history length (default: %(default)s)")
    parser.add_argument("--candidates", type=int, default=15,
                        help="MIND: average candidates per impression (default: %(default)s)")
    parser.add_argument("--test", action="store_true", help="MIND: also write an unlabeled MIND<variant>_test split")
    parser.add_argument("--overwrite", action="store_true", help="replace raw files of the same names in --output")
    parser.set_defaults(func=run)


def run(args):
    try:
        if args.dataset == "mind":
            written = list(synth_mind(args.output, args.users, args.items, args.seed, args.candidates,
                                      args.history_mean, args.test, overwrite=args.overwrite).values())
        else:
            written = synth_goodreads(args.output, args.users, args.items, args.seed, args.history_mean,
                                      overwrite=args.overwrite)
    except (FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a read-only or full --output, a file where a folder should be
        print(f"error: {describe_output_error(error, args.output)}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0
