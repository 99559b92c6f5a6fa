"""ROUGE and the lead-N baseline, checked against values worked out by hand."""

from __future__ import annotations

import pytest

from s2s_model.evaluation import (
    best_lead_baseline,
    evaluate_predictions,
    format_report,
    lead_words,
    rouge,
    split_sentences,
)


def test_rouge_of_a_dropped_word_matches_hand_counts() -> None:
    # ref: the cat sat on the mat (6 tokens, 5 bigrams); pred: the cat on the mat (5, 4).
    # Unigrams: all 5 predicted tokens match -> P = 5/5, R = 5/6, F = 10/11.
    # Bigrams: "the cat", "on the", "the mat" match -> P = 3/4, R = 3/5, F = 2/3.
    # LCS: "the cat on the mat" = 5 -> same as unigrams.
    scores = rouge(["the cat sat on the mat"], ["the cat on the mat"])
    assert scores.rouge1 == pytest.approx(100 * 10 / 11)
    assert scores.rouge2 == pytest.approx(100 * 2 / 3)
    assert scores.rougeL == pytest.approx(100 * 10 / 11)
    assert scores.rougeLsum == pytest.approx(100 * 10 / 11)
    assert scores.n_docs == 1


def test_rouge_stems_and_ignores_case_and_punctuation() -> None:
    # Porter: running -> run, dogs -> dog; "Run," -> run; tokens of <= 3 letters are kept as is.
    scores = rouge(["Running dogs!"], ["run, DOG"])
    assert scores.rouge1 == pytest.approx(100.0)
    assert scores.rouge2 == pytest.approx(100.0)


def test_rouge_lsum_matches_sentences_where_rouge_l_cannot() -> None:
    # Swapped sentences: one LCS over the whole text finds 3 of 6 tokens (F = 1/2); the
    # summary-level LCS matches each reference sentence in full (F = 1).
    reference = "Alpha bravo golf. Delta echo foxtrot."
    prediction = "Delta echo foxtrot. Alpha bravo golf."
    scores = rouge([reference], [prediction])
    assert scores.rougeL == pytest.approx(50.0)
    assert scores.rougeLsum == pytest.approx(100.0)


def test_rouge_averages_documents() -> None:
    scores = rouge(["alpha bravo", "alpha bravo"], ["alpha bravo", "xray yankee"])
    assert scores.rouge1 == pytest.approx(50.0)
    assert scores.n_docs == 2


def test_rouge_rejects_unpaired_inputs() -> None:
    with pytest.raises(ValueError, match="2 references but 1 predictions"):
        rouge(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no documents"):
        rouge([], [])


def test_split_sentences() -> None:
    text = 'It works. "Quoted" too! Version 2.0 is out? Yes 3 things.\nNew line e.g. here.'
    assert split_sentences(text) == [
        "It works.",
        '"Quoted" too!',
        "Version 2.0 is out?",
        "Yes 3 things.",
        "New line e.g. here.",
    ]


def test_lead_words() -> None:
    assert lead_words("  one two\nthree four ", 3) == "one two three"
    assert lead_words("one", 5) == "one"


SOURCE = "alpha bravo golf delta echo foxtrot hotel india"


def test_lead_baseline_picks_the_n_that_fits_the_references() -> None:
    # References are the first 2, 4 and 4 words. Lead-N F1 per doc is 2 min(N, r) / (N + r):
    #   N=2: (1 + 4/6 + 4/6) / 3 = .778   N=3: (4/5 + 6/7 + 6/7) / 3 = .838
    #   N=4: (4/6 + 1 + 1) / 3   = .889   N=5: (4/7 + 8/9 + 8/9) / 3 = .783
    sources = [SOURCE] * 3
    references = ["alpha bravo", "alpha bravo golf delta", "alpha bravo golf delta"]
    lead = best_lead_baseline(sources, references, max_n=8)
    assert lead.n == 4
    assert lead.rougeL_by_n[3] == pytest.approx(100 * (4 / 5 + 6 / 7 + 6 / 7) / 3)
    assert lead.rougeL_by_n[4] == pytest.approx(100 * (4 / 6 + 1 + 1) / 3)
    assert lead.rougeL_by_n[8] == pytest.approx(100 * (4 / 10 + 8 / 12 + 8 / 12) / 3)
    # The reported scores are rouge-score's own for lead-4.
    assert lead.scores == rouge(references, [lead_words(s, 4) for s in sources])


def test_lead_baseline_curve_agrees_with_rouge_score_on_messy_text() -> None:
    sources = [
        "The Foo library parses YAML, JSON & TOML files; it's fast.\nRunning it is easy.",
        "Tools: a daemon (food-server) and clients for networked audio streams.",
    ]
    references = ["library for parsing YAML files", "networked audio daemon and clients"]
    lead = best_lead_baseline(sources, references, max_n=12)
    for n in range(1, 13):
        expected = rouge(references, [lead_words(s, n) for s in sources]).rougeL
        assert lead.rougeL_by_n[n] == pytest.approx(expected), n


def test_lead_baseline_prefers_the_shortest_of_equal_ns() -> None:
    # Beyond the source's 2 words every N gives the same text, hence the same score.
    lead = best_lead_baseline(["alpha bravo"], ["alpha bravo golf"], max_n=5)
    assert lead.n == 2


def test_evaluate_predictions_reports_lengths_lead_and_speed() -> None:
    sources = [SOURCE, SOURCE]
    references = ["alpha bravo", "alpha bravo"]
    report = evaluate_predictions(
        references, ["alpha bravo", "xray"], sources=sources, seconds=4.0, max_lead_words=5
    )
    assert report.system.rouge1 == pytest.approx(50.0)
    assert report.lead is not None and report.lead.n == 2
    assert report.mean_words == {"reference": 2.0, "prediction": 1.5, "source": 8.0, "lead": 2.0}
    assert report.docs_per_second == pytest.approx(0.5)
    data = report.to_dict()
    assert data["n_docs"] == 2 and data["lead"]["n"] == 2
    table = format_report(report)
    assert "lead-2" in table and "0.5 docs/s" in table and "R-L -50.00" in table


def test_evaluate_predictions_reports_the_quality_rates() -> None:
    sources = [SOURCE, SOURCE]
    references = ["alpha bravo", "alpha alpha"]
    known = {"alpha", "bravo", "xray"}
    report = evaluate_predictions(
        references, ["alpha bravo", "xray zulu"], sources=sources, known_words=known
    )
    assert report.quality is not None
    system, reference = report.quality["system"], report.quality["reference"]
    assert system["unknown_word"] == pytest.approx(50.0) and reference["unknown_word"] == 0.0
    assert system["repeat"] == 0.0 and reference["repeat"] == pytest.approx(50.0)
    assert system["novel_words"] == pytest.approx(50.0)  # "xray zulu": both words novel
    assert report.to_dict()["quality"] == report.quality
    table = format_report(report)
    assert "glued or cut word" in table and "a content word repeated" in table
    assert "glued or cut" not in format_report(
        evaluate_predictions(references, references, sources=sources)
    )
    assert evaluate_predictions(references, references).quality is None


def test_split_sentences_of_lower_cased_tokenized_text() -> None:
    # CNN/DailyMail as See et al. prepared it: standalone enders split whatever follows, closing
    # tokens stay with their sentence, and "oct." is an abbreviation there.
    text = "he said `` no . '' then left on oct. 13 . it rained ! \" why ? \" she asked ."
    assert split_sentences(text) == [
        "he said `` no . ''",
        "then left on oct. 13 .",
        "it rained !",
        '" why ?',
        '" she asked .',
    ]
