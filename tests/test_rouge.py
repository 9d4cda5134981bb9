"""ROUGE of generated vs reference summaries: hand-counted n-gram and LCS overlaps."""
import pytest

from recbole_embsum.evaluation.rouge import rouge_report

REFERENCE = "The cat sat on the mat."


def test_one_word_changed():
    # Tokens: the cat sat on the mat / the cat lay on the mat.
    # Unigrams shared: the x2, cat, on, mat = 5 of 6 each side. Bigrams shared: the-cat, on-the, the-mat = 3 of 5.
    # LCS: the cat on the mat = 5 of 6.
    report = rouge_report(["the cat lay on the mat"], [REFERENCE])
    assert report["rouge1"].fmeasure == pytest.approx(5 / 6)
    assert report["rouge2"].fmeasure == pytest.approx(3 / 5)
    assert report["rougeL"].fmeasure == pytest.approx(5 / 6)


def test_precision_is_over_the_prediction_and_recall_over_the_reference():
    report = rouge_report(["the cat"], [REFERENCE])
    assert (report["rouge1"].precision, report["rouge1"].recall) == pytest.approx((1.0, 2 / 6))
    assert report["rouge1"].fmeasure == pytest.approx(2 * 1.0 * (1 / 3) / (1 + 1 / 3))
    assert (report["rouge2"].precision, report["rouge2"].recall) == pytest.approx((1.0, 1 / 5))


def test_mean_over_pairs_and_stemming():
    # Pair 1 identical (1.0); pair 2 shares nothing (0.0) -> mean 0.5.
    report = rouge_report([REFERENCE, "dogs barking"], [REFERENCE, "a quiet morning"])
    assert report["rougeL"].fmeasure == pytest.approx(0.5)
    # "enjoys reading novels" vs "enjoyed read novel": equal after Porter stemming only.
    stemmed = rouge_report(["enjoys reading novels"], ["enjoyed read novel"])
    assert stemmed["rouge1"].fmeasure == pytest.approx(1.0)
    plain = rouge_report(["enjoys reading novels"], ["enjoyed read novel"], use_stemmer=False)
    assert plain["rouge1"].fmeasure == 0.0


def test_unpaired_inputs_are_rejected():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        rouge_report(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no summary pairs"):
        rouge_report([], [])


def test_shared_template_prefix_is_removed_before_scoring():
    from recbole_embsum.evaluation.rouge import rouge_without_shared_prefix, shared_prefix, without_prefix

    references = ["The user reads about sports and politics.", "The user reads about cooking."]
    assert shared_prefix(references) == "The user reads about"
    assert without_prefix("The user reads about cooking.", "The user reads about") == "cooking."
    assert without_prefix("The user reads", "The user reads about") == "The user reads"
    assert shared_prefix(["a b", "c d"]) == ""
    copied = ["The user reads about", "The user reads about"]  # only the template: ROUGE-1 F1 was 4/5 and 4/6
    prefix, rouge = rouge_without_shared_prefix(copied, references)
    assert prefix == "The user reads about"
    assert rouge["rouge1"].fmeasure == 0.0
    _, exact = rouge_without_shared_prefix(references, references)
    assert exact["rougeL"].fmeasure == 1.0


def test_a_few_texts_for_many_users_are_not_meaningful():
    from recbole_embsum.evaluation.rouge import looks_meaningful

    assert not looks_meaningful(["about of ofof artith"] * 12 + ["about sports"] * 3)
    assert not looks_meaningful(["one"])
    assert looks_meaningful(["sports", "cooking", "politics", "sports"])


def test_distinct_summaries_that_fit_every_user_alike_are_not_meaningful():
    from recbole_embsum.evaluation.rouge import looks_meaningful, user_specific_count

    references = [f"This user mostly engages with news about {topic} and {other}." for topic, other in
                  [("travel", "finance"), ("music", "science"), ("health", "sports"), ("finance", "music")]]
    # distinct noise after the copied template (what a half-trained decoder writes): nobody's interests
    noise = [f"This user mostly engages with news about and and) 16), {tail}" for tail in ("of", "you", "season", "x")]
    assert user_specific_count(noise, references) == 0
    assert not looks_meaningful(noise, references)
    assert looks_meaningful(noise)  # distinct: the old test alone let these through
    readable = ["This user mostly engages with news about travel.", "This user mostly engages with news about music.",
                "This user mostly engages with news about health and sports.", "about finance"]
    assert user_specific_count(readable, references) == 4
    assert looks_meaningful(readable, references)


def test_users_who_share_interests_may_share_a_summary():
    from recbole_embsum.evaluation.rouge import looks_meaningful

    # 12 users, 7 distinct references (several users only read about travel, or music): a decoder naming each user's
    # main interest writes 5 distinct texts, at least half the references' 7, each specific to its user
    topics = ["travel", "travel", "finance and music", "science and music", "sports", "travel", "music",
              "finance and sports", "travel and music", "music", "travel", "sports"]
    references = [f"This user mostly engages with news articles about {topic}." for topic in topics]
    main_topic = [f"This user mostly engages with news articles about {topic.split()[0]}." for topic in topics]
    assert len(set(references)) == 7 and len(set(main_topic)) == 5
    assert looks_meaningful(main_topic, references)
    assert not looks_meaningful(main_topic)  # without references: 5 texts for 12 users is too few
    two_texts = [main_topic[0], main_topic[2]] * 6
    assert not looks_meaningful(two_texts, references)  # fewer than half the references' variety
