"""Summary backends: an OpenAI-compatible HTTP endpoint, a local transformers causal LM, and an offline heuristic.

Every backend has ``name``, ``model`` and ``run(jobs)``: it takes an iterable of :class:`SummaryJob` and yields one
:class:`Answer` per job as answers arrive (not necessarily in job order), so the caller can store each one at once.
A per-user failure is an ``Answer`` with ``error`` set; :class:`BackendFatalError` aborts the run (e.g. a wrong API key
or model name, which would fail every user alike).
"""
import collections
import concurrent.futures
import email.utils
import http.client
import itertools
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
# Statuses worth retrying: timeouts, conflicts, rate limits and server errors (every 5xx is retried as well).
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})
# Statuses that would fail every request alike (key, permission, endpoint or model name): stop the whole run.
FATAL_STATUSES = frozenset({401, 403, 404})
# Network failures retried like a 5xx: refused/reset/dropped connections, timeouts (all OSError), truncated responses.
NETWORK_ERRORS = (OSError, http.client.HTTPException)


@dataclass
class SummaryJob:
    """One user to summarise: the prompt messages and the items they were built from (most recent first)."""

    user_id: str
    messages: list
    items: list
    prompt_hash: str


@dataclass
class Answer:
    """A backend's answer for one job: ``summary`` on success, else ``error`` (a readable reason)."""

    job: SummaryJob
    summary: str = None
    error: str = None


class BackendFatalError(RuntimeError):
    """An error that retrying or moving to the next user cannot fix; the run stops."""


class RequestRejected(Exception):
    """A 4xx response for one request that retrying cannot fix (e.g. 400: the prompt is too long for the model)."""


class RetriesExhausted(Exception):
    """Every attempt of one request failed with a retryable error."""


def _clean_summary(text):
    """Collapse whitespace so a summary is one tidy paragraph."""
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------------------------------
# openai: any /v1/chat/completions server (vLLM, Ollama, TGI, OpenAI)
# ---------------------------------------------------------------------------------------------------------------------


def chat_completions_url(base_url):
    """``http://h:8000/v1`` or ``http://h:8000`` -> ``http://h:8000/v1/chat/completions`` (a full URL is kept)."""
    url = base_url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if url.endswith("/v1"):
        return url + "/chat/completions"
    return url + "/v1/chat/completions"


def _retry_after_seconds(value):
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_message(body):
    """The server's own error text from an OpenAI/vLLM/TGI/Ollama error body, else the body's start."""
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:300]
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            return str(error.get("message") or error)[:300]
        if isinstance(error, str):
            return error[:300]
        if "message" in data:
            return str(data["message"])[:300]
    return text.strip()[:300]


class OpenAIBackend:
    """Chat completions over HTTP with bounded concurrency, retries with back-off, and several servers.

    Requests rotate over ``base_urls`` (a retry moves on to the next one). A request is retried on 408/409/425/429,
    any 5xx, timeouts and dropped connections, after ``min(backoff_max, backoff_base * 2**attempt)`` seconds scaled
    by a random factor in [0.5, 1] (jitter), or after the server's ``Retry-After`` when that is longer.
    401/403/404 stop the run (:class:`BackendFatalError`); other 4xx fail only that user, without retrying.
    """

    name = "openai"

    def __init__(self, model, base_urls=(), api_key=None, concurrency=8, max_retries=6, backoff_base=1.0,
                 backoff_max=60.0, timeout=120.0, temperature=0.0, max_new_tokens=256, sleep=time.sleep, seed=None):
        if not model:
            raise ValueError("the openai backend needs --model (the model name the server serves)")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        base_urls = list(base_urls) or [os.environ.get("OPENAI_BASE_URL") or DEFAULT_OPENAI_BASE_URL]
        self.model = model
        self.urls = [chat_completions_url(url) for url in base_urls]
        for url in self.urls:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"base URL {url!r} is not an http(s) URL like http://localhost:8000/v1")
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY")
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.timeout = timeout
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self._sleep = sleep
        self._random = random.Random(seed)
        self._next_url = itertools.count()
        self._lock = threading.Lock()

    def _pick_url(self):
        with self._lock:
            return self.urls[next(self._next_url) % len(self.urls)]

    def _backoff(self, attempt, retry_after):
        with self._lock:
            jitter = self._random.uniform(0.5, 1.0)
        delay = min(self.backoff_max, self.backoff_base * 2 ** attempt) * jitter
        return max(delay, retry_after or 0.0)

    def _post(self, url, body):
        """One HTTP attempt: the parsed JSON response, or an exception."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read().decode("utf-8"))

    def complete(self, messages):
        """The assistant's reply to ``messages``, retrying transient failures.

        Raises :class:`RequestRejected` (a 4xx for this request), :class:`BackendFatalError` (401/403/404), or
        :class:`RetriesExhausted` when every attempt failed.
        """
        body = json.dumps({
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_new_tokens,
        }).encode("utf-8")
        last_error = None
        for attempt in range(self.max_retries + 1):
            url = self._pick_url()
            retry_after = None
            try:
                data = self._post(url, body)
            except urllib.error.HTTPError as err:
                detail = _error_message(err.read() or b"")
                status = err.code
                if status in FATAL_STATUSES:
                    raise BackendFatalError(
                        f"HTTP {status} from {url}: {detail} (check the base URL, --model {self.model!r} and the API "
                        f"key; every request would fail the same way)"
                    ) from None
                if status < 500 and status not in RETRYABLE_STATUSES:
                    raise RequestRejected(f"HTTP {status} from {url}: {detail} (not retried: the server rejects "
                                          f"this request itself)") from None
                retry_after = _retry_after_seconds(err.headers.get("Retry-After"))
                last_error = f"HTTP {status} from {url}: {detail}"
            except (ValueError, UnicodeDecodeError) as err:  # a 200 whose body is not JSON
                last_error = f"unreadable response from {url}: {err}"
            except NETWORK_ERRORS as err:
                last_error = f"{type(err).__name__} talking to {url}: {err}"
            else:
                try:
                    content = data["choices"][0]["message"]["content"]
                except (KeyError, IndexError, TypeError):
                    raise RequestRejected(f"response from {url} has no choices[0].message.content: "
                                          f"{json.dumps(data)[:300]}") from None
                summary = _clean_summary(content or "")
                if not summary:
                    raise RequestRejected(f"empty summary from {url}")
                return summary
            if attempt < self.max_retries:
                delay = self._backoff(attempt, retry_after)
                logger.debug("retry %d/%d in %.2fs after %s", attempt + 1, self.max_retries, delay, last_error)
                self._sleep(delay)
        attempts = self.max_retries + 1
        plural = "s" if attempts > 1 else ""
        raise RetriesExhausted(f"gave up after {attempts} attempt{plural}; last error: {last_error}")

    def _answer(self, job):
        try:
            return Answer(job, summary=self.complete(job.messages))
        except (RequestRejected, RetriesExhausted) as err:
            return Answer(job, error=str(err))

    def run(self, jobs):
        """Answer ``jobs`` with at most ``concurrency`` requests in flight; yields answers as they complete."""
        jobs = iter(jobs)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="summaries")
        pending = set()
        try:
            for job in itertools.islice(jobs, self.concurrency):
                pending.add(pool.submit(self._answer, job))
            while pending:
                done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    yield future.result()  # re-raises BackendFatalError
                    for job in itertools.islice(jobs, 1):
                        pending.add(pool.submit(self._answer, job))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------------------------------------------------------------
# transformers: a local Hugging Face causal LM
# ---------------------------------------------------------------------------------------------------------------------


class TransformersBackend:
    """Batched greedy (or sampled, if ``temperature > 0``) generation with a local causal LM.

    The prompt is rendered with the tokenizer's chat template when it has one, else the message contents are joined
    by blank lines. Prompts are left-padded so every row's new tokens start at the same position.
    """

    name = "transformers"

    def __init__(self, model, batch_size=8, max_new_tokens=256, temperature=0.0, device=None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not model:
            raise ValueError("the transformers backend needs --model (a Hugging Face model name or local path)")
        self.model = str(model)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(self.model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.lm = AutoModelForCausalLM.from_pretrained(self.model, dtype="auto").to(self.device).eval()
        self._torch = torch

    def render(self, messages):
        """The prompt text for one job."""
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(message["content"] for message in messages) + "\n\n"

    def generate(self, batch_messages):
        """Replies to a batch of message lists, in order."""
        texts = [self.render(messages) for messages in batch_messages]
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True,
                                 add_special_tokens=not self.tokenizer.chat_template).to(self.device)
        sampling = {"do_sample": True, "temperature": self.temperature} if self.temperature > 0 else {
            "do_sample": False}
        with self._torch.inference_mode():
            output = self.lm.generate(**encoded, max_new_tokens=self.max_new_tokens,
                                      pad_token_id=self.tokenizer.pad_token_id, **sampling)  # (B, L + new)
        new_tokens = output[:, encoded["input_ids"].shape[1]:]  # (B, new)
        return [_clean_summary(text) for text in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    def run(self, jobs):
        """Generate ``batch_size`` jobs at a time; a failing batch fails its users (reason recorded)."""
        jobs = iter(jobs)
        while batch := list(itertools.islice(jobs, self.batch_size)):
            try:
                replies = self.generate([job.messages for job in batch])
            except (RuntimeError, ValueError) as err:  # e.g. out of memory, prompt longer than the context
                for job in batch:
                    yield Answer(job, error=f"{type(err).__name__}: {err}")
                continue
            for job, reply in zip(batch, replies):
                yield Answer(job, summary=reply) if reply else Answer(job, error="the model generated no text")


# ---------------------------------------------------------------------------------------------------------------------
# heuristic: offline, deterministic, no LLM
# ---------------------------------------------------------------------------------------------------------------------


class HeuristicBackend:
    """Deterministic summaries from a user's categories and the salient words of their items, in one of two styles:

    * ``full``: three sentences: the top categories with their counts, the salient words, the latest item's title;
    * ``brief``: one sentence naming the categories that make up at least ``brief_min_share`` of the history (the
      most frequent one always; at most ``top_categories``), e.g. "This user mostly engages with news articles about
      travel and music." A target a small decoder trained from scratch learns within minutes on a CPU (the demo's).

    Salient words are the user's top tf-idf terms: term counts over the user's item titles and condensed abstracts,
    weighted by the inverse document frequency of the term over every item of the dataset (scikit-learn's
    ``TfidfVectorizer``, English stop words removed, no normalisation). Without normalisation a user's vector is the
    sum of their items' vectors, so the item matrix is computed once and each user costs one sparse row sum.
    Items outside the corpus add no words. Ties break alphabetically, so the output is a pure function of the data.
    This is not an LLM summary; the backend is recorded as ``heuristic`` and logged as such.
    """

    name = "heuristic"
    # The recorded model name of each style: bump one when its sentences or weighting change, so that cached
    # summaries of another version or style are not mixed into one file.
    MODELS = {"full": "tfidf-v1", "brief": "brief-v1"}

    def __init__(self, corpus_items, noun="items", top_categories=3, top_words=5, abstract_words=100, style="full",
                 brief_min_share=0.2):
        if style not in self.MODELS:
            raise ValueError(f"heuristic_style {style!r} is not one of {sorted(self.MODELS)}")
        self.style = style
        self.model = self.MODELS[style]
        self.brief_min_share = brief_min_share
        self.noun = noun
        self.top_categories = top_categories
        self.top_words = top_words
        self._terms = None
        if style == "full":  # only the full style names salient words: the brief one needs no tf-idf matrix
            self._fit_tfidf(list(corpus_items), abstract_words)
        logger.warning("heuristic backend (%s style): summaries are built from categories%s, not by an LLM", style,
                       " and tf-idf keywords" if style == "full" else "")

    def _fit_tfidf(self, corpus_items, abstract_words):
        """The (items, vocabulary) count * idf matrix of the corpus' titles and condensed abstracts."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        from .prompt import condense

        self._row_of = {item.item_id: row for row, item in enumerate(corpus_items)}
        vectorizer = TfidfVectorizer(stop_words="english", token_pattern=r"(?u)\b[^\W\d_]{3,}\b", norm=None,
                                     dtype=np.float64)
        try:
            documents = [f"{item.title} {condense(item.abstract, abstract_words)}" for item in corpus_items]
            self._matrix = vectorizer.fit_transform(documents).tocsr()  # (items, vocabulary) count * idf
            self._terms = vectorizer.get_feature_names_out()
        except ValueError:  # no items, or no word of 3+ letters that is not a stop word
            logger.warning("heuristic backend: the item texts have no usable words; summaries use categories only")

    def salient_words(self, items):
        """The user's ``top_words`` highest tf-idf terms (ties: alphabetical)."""
        if self._terms is None:  # the brief style, or a corpus without usable words
            return []
        rows = [self._row_of[item.item_id] for item in items if item.item_id in self._row_of]
        if not rows:
            return []
        user = self._matrix[rows].sum(axis=0).A1  # (vocabulary,) = tf-idf of the user's concatenated text
        present = user.nonzero()[0]
        scores = user[present]
        if len(scores) > self.top_words:  # keep the terms tied with or above the k-th score, then sort those few
            keep = scores >= np.partition(scores, -self.top_words)[-self.top_words]
            present, scores = present[keep], scores[keep]
        scored = sorted(zip(-scores, self._terms[present]))
        return [str(term) for _, term in scored[: self.top_words]]

    def summarize(self, items):
        """The summary, in this backend's style, of items ordered most recent first."""
        categories = collections.Counter(item.category for item in items if item.category)
        top = sorted(categories.items(), key=lambda pair: (-pair[1], pair[0]))[: self.top_categories]
        if self.style == "brief":
            return self._brief(items, top)
        if top:
            parts = [f"{name} ({count} of {len(items)})" if i == 0 else f"{name} ({count})"
                     for i, (name, count) in enumerate(top)]
            first = f"This user mostly engages with {self.noun} about {_join(parts)}."
        else:
            first = f"This user engaged with {len(items)} {self.noun} without a category."
        words = self.salient_words(items)
        second = (f"Recurring subjects in these {self.noun} include {_join(words)}." if words
                  else f"No recurring subject stands out in these {self.noun}.")
        latest = items[0] if items else None
        if latest is None:
            third = "There is no recent engagement."
        else:
            where = f" ({latest.category})" if latest.category else ""
            third = f"Most recently they engaged with \"{' '.join(latest.title.split())}\"{where}."
        return " ".join([first, second, third])

    def _brief(self, items, top):
        """The brief style's sentence from the top ``(category, count)`` pairs, most frequent first."""
        if not top:
            return f"This user engaged with {len(items)} {self.noun} without a category."
        named = [name for i, (name, count) in enumerate(top) if i == 0 or count >= self.brief_min_share * len(items)]
        return f"This user mostly engages with {self.noun} about {_join(named)}."

    def run(self, jobs):
        for job in jobs:
            yield Answer(job, summary=self.summarize(job.items))


def _join(words):
    """``a``, ``a and b``, ``a, b and c``."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def backend_identity(name, options):
    """``(backend name, model name)`` as recorded in the summary file, known before loading anything."""
    if name == "heuristic":
        return HeuristicBackend.name, HeuristicBackend.MODELS[options["heuristic_style"]]
    if name in ("openai", "transformers"):
        if not options["model"]:
            raise ValueError(f"the {name} backend needs --model (served model name or Hugging Face name/path)")
        return name, str(options["model"])
    raise ValueError(f"unknown summary backend {name!r}; expected heuristic, openai or transformers")


def make_backend(name, options, corpus_items=(), noun="items"):
    """Build the backend ``name`` from resolved summary options (see properties/summaries.yaml)."""
    if name == "heuristic":
        return HeuristicBackend(corpus_items, noun=noun, abstract_words=options["abstract_words"],
                                style=options["heuristic_style"])
    if name == "openai":
        return OpenAIBackend(
            options["model"], base_urls=options["base_url"] or (), api_key=options["api_key"],
            concurrency=options["concurrency"], max_retries=options["max_retries"],
            backoff_base=options["backoff_base"], backoff_max=options["backoff_max"], timeout=options["timeout"],
            temperature=options["temperature"], max_new_tokens=options["max_new_tokens"],
        )
    if name == "transformers":
        return TransformersBackend(
            options["model"], batch_size=options["batch_size"], max_new_tokens=options["max_new_tokens"],
            temperature=options["temperature"], device=options["device"],
        )
    raise ValueError(f"unknown summary backend {name!r}; expected heuristic, openai or transformers")
