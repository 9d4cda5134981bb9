"""The openai backend against a local scripted server, and the heuristic backend's exact, deterministic output."""
import threading

import pytest
from test_summaries_fakes import ITEMS, ChatServer

from recbole_embsum.summaries.backends import (
    BackendFatalError,
    HeuristicBackend,
    OpenAIBackend,
    RequestRejected,
    SummaryJob,
    chat_completions_url,
)
from recbole_embsum.summaries.history import ItemText

MESSAGES = [{"role": "user", "content": "History: Item of U7. Condense into three sentences."}]


def _backend(urls, sleeps=None, **kwargs):
    """A backend with tiny back-offs whose sleeps are recorded instead of slept."""
    record = sleeps.append if sleeps is not None else (lambda seconds: None)
    options = dict(max_retries=3, backoff_base=0.01, backoff_max=0.05, timeout=5, seed=0, sleep=record)
    options.update(kwargs)
    return OpenAIBackend("tiny-llm", base_urls=urls, **options)


def test_success_sends_the_openai_request_shape():
    with ChatServer() as server:
        reply = _backend([server.base_url], api_key="sk-test", max_new_tokens=99).complete(MESSAGES)
    assert reply == "Summary for U7."  # whitespace around the content is trimmed
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["authorization"] == "Bearer sk-test"
    assert request["body"] == {"model": "tiny-llm", "messages": MESSAGES, "temperature": 0.0, "max_tokens": 99}


def test_429_then_success_honours_retry_after():
    sleeps = []
    with ChatServer([("status", 429, {"Retry-After": "2"}, "slow down")]) as server:
        assert _backend([server.base_url], sleeps).complete(MESSAGES) == "Summary for U7."
    assert len(server.requests) == 2
    assert sleeps == [2.0]  # the server's Retry-After beats the 0.01 s computed back-off


def test_500_then_success_backs_off_with_jitter():
    sleeps = []
    with ChatServer([("status", 500, {}, "boom"), ("status", 503, {}, "busy")]) as server:
        assert _backend([server.base_url], sleeps).complete(MESSAGES) == "Summary for U7."
    assert len(server.requests) == 3
    # attempt 0: 0.01 s, attempt 1: 0.02 s, each scaled by a jitter factor in [0.5, 1]
    assert 0.005 <= sleeps[0] <= 0.01 and 0.01 <= sleeps[1] <= 0.02


def test_dropped_connection_is_retried():
    with ChatServer(["drop"]) as server:
        assert _backend([server.base_url]).complete(MESSAGES) == "Summary for U7."
    assert len(server.requests) == 2


def test_400_is_a_clear_error_and_not_retried():
    message = "This model's maximum context length is 4096 tokens."
    with ChatServer([("status", 400, {}, message)]) as server:
        with pytest.raises(RequestRejected) as caught:
            _backend([server.base_url]).complete(MESSAGES)
    assert len(server.requests) == 1
    assert str(caught.value) == (f"HTTP 400 from {server.base_url}/chat/completions: {message} "
                                 f"(not retried: the server rejects this request itself)")


def test_401_or_unknown_model_stops_the_run():
    with ChatServer([("status", 404, {}, "The model `tiny-llm` does not exist.")]) as server:
        jobs = [SummaryJob("U1", MESSAGES, [], "h")]
        with pytest.raises(BackendFatalError, match=r"HTTP 404 .*does not exist.*--model 'tiny-llm'"):
            list(_backend([server.base_url]).run(jobs))


def test_giving_up_fails_only_that_user():
    with ChatServer([("status", 502, {}, "bad gateway")] * 4) as server:
        jobs = [SummaryJob("U1", MESSAGES, [], "h")]
        answers = list(_backend([server.base_url], max_retries=3, concurrency=1).run(jobs))
    assert answers[0].summary is None
    assert answers[0].error.startswith("gave up after 4 attempts; last error: HTTP 502 from ")
    assert answers[0].error.endswith(": bad gateway")


def test_several_servers_share_the_load_and_concurrency_is_bounded():
    gate = threading.Event()
    with ChatServer([("hang", gate)]) as slow, ChatServer() as fast:
        backend = _backend([slow.base_url, fast.base_url], concurrency=2, max_retries=1)
        jobs = [SummaryJob(f"U{k}", [{"role": "user", "content": f"Item of U{k}"}], [], "h") for k in range(6)]
        answers = []
        for answer in backend.run(jobs):
            answers.append(answer)
            if len(answers) == 5:
                gate.set()  # the first request (to the slow server) hung; the other slot served 5 users meanwhile
    assert sorted(a.job.user_id for a in answers) == [f"U{k}" for k in range(6)]
    assert all(a.summary == f"Summary for {a.job.user_id}." for a in answers)
    assert len(slow.requests) >= 2 and len(fast.requests) >= 3  # requests alternate between the two servers


def test_base_url_forms():
    assert chat_completions_url("http://h:8000/v1/") == "http://h:8000/v1/chat/completions"
    assert chat_completions_url("http://h:11434") == "http://h:11434/v1/chat/completions"
    assert chat_completions_url("http://h/x/chat/completions") == "http://h/x/chat/completions"
    with pytest.raises(ValueError, match=r"base URL 'localhost:8000/v1/chat/completions' is not an http\(s\) URL"):
        OpenAIBackend("m", base_urls=["localhost:8000/v1"])


def _items(*ids):
    by_id = {item[0]: ItemText(*item) for item in ITEMS}
    return [by_id[i] for i in ids]


def test_heuristic_brief_style_names_the_categories_of_at_least_a_fifth_of_the_history():
    corpus = _items("N1", "N2", "N3", "N4", "N5")
    brief = HeuristicBackend(corpus, noun="news articles", style="brief")
    assert brief.model == "brief-v1"
    # sports 2 of 4, finance 1 of 4 and foodanddrink 1 of 4: each at least a fifth; most frequent first, ties by name
    assert brief.summarize(_items("N4", "N3", "N2", "N1")) == (
        "This user mostly engages with news articles about sports, finance and foodanddrink.")
    # sports 4 of 6, foodanddrink 1 of 6 (below a fifth): only sports
    assert brief.summarize(_items("N1", "N3", "N1", "N3", "N4", "N3")) == (
        "This user mostly engages with news articles about sports.")
    # one item: its category, however small the share
    assert brief.summarize(_items("N4")) == "This user mostly engages with news articles about foodanddrink."
    with pytest.raises(ValueError, match=r"heuristic_style 'short' is not one of \['brief', 'full'\]"):
        HeuristicBackend(corpus, style="short")


def test_heuristic_summary_is_exact_and_deterministic():
    corpus = _items("N1", "N2", "N3", "N4", "N5")
    user = _items("N4", "N3", "N2", "N1")  # most recent first
    first = HeuristicBackend(corpus, noun="news articles").summarize(user)
    again = HeuristicBackend(list(reversed(corpus)), noun="news articles").summarize(list(user))
    assert first == again
    # tf-idf = count in the user's text * (ln((1 + 5 items) / (1 + df)) + 1):
    # lakers 2 * 2.099 = 4.20 (title and abstract of N1); boston, celtics 2 * 1.693 = 3.39 (in N1 and N3);
    # every other term 1 * 2.099, ties broken alphabetically: adds, beat.
    assert first == (
        "This user mostly engages with news articles about sports (2 of 4), finance (1) and foodanddrink (1). "
        "Recurring subjects in these news articles include lakers, boston, celtics, adds and beat. "
        "Most recently they engaged with \"Easy pasta recipes for weeknights\" (foodanddrink)."
    )
