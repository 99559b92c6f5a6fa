"""A model's training domain: the profile, its threshold, where it is saved, who saves it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from s2s_model import Summarizer
from s2s_model.config import TrainConfig
from s2s_model.domain import (
    METADATA_KEY,
    MIN_DOCUMENTS,
    DomainError,
    DomainProfile,
    attach_profile,
    build_profile,
    domain_profile,
    frequent_words,
    quantile,
)
from s2s_model.evaluation import evaluate_predictions, format_report
from s2s_model.quality import word_set
from s2s_model.train import BEST_DIR, LAST_DIR, fit
from tests.s2s_model.test_train import TINY_MODEL, tiny_pairs

PROFILE = DomainProfile(
    known_words=frozenset({"library", "for", "python", "the"}),
    summary_words=frozenset({"bindings", "development", "files"}),
    threshold=0.7,
    prior_words=3.0,
)


def test_known_share_counts_distinct_known_words_with_the_prior() -> None:
    # 2 of 3 distinct words known, 3 known pseudo-words: (2 + 3) / (3 + 3).
    assert PROFILE.known_share({"library", "python", "cats"}) == pytest.approx(5 / 6)
    # (0 + 3) / (5 + 3) = 0.375: below 0.7.
    assert PROFILE.known_share(word_set("Shares fell sharply on Wall")) == pytest.approx(3 / 8)
    assert PROFILE.known_share(set()) == 1.0  # nothing read, nothing far


def test_out_of_domain_is_below_the_threshold() -> None:
    assert not PROFILE.is_out_of_domain(word_set("the library for Python"))
    assert PROFILE.is_out_of_domain(word_set("Shares fell sharply on Wall Street"))
    # (1 + 3) / (3 + 3) = 0.667 < 0.7; (2 + 3) / (3 + 3) = 0.833.
    assert PROFILE.is_out_of_domain({"library", "cats", "dogs"})
    assert not PROFILE.is_out_of_domain({"library", "python", "dogs"})


def test_frequent_words_keep_words_in_enough_documents() -> None:
    texts = ["alpha beta", "alpha gamma", "alpha beta.", "delta"]
    # doc share 0.5 of 4 documents: at least 2 documents.
    known, documents, minimum = frequent_words(texts, doc_share=0.5)
    assert (known, documents, minimum) == (frozenset({"alpha", "beta"}), 4, 2)
    # Never fewer than MIN_DOCUMENTS, however small the share.
    assert frequent_words(texts, doc_share=0.0)[2] == MIN_DOCUMENTS


def test_quantile_is_the_lower_value_without_interpolation() -> None:
    values = [0.9, 0.1, 0.5, 0.3, 0.7]
    assert quantile(values, 0.0) == 0.1
    assert quantile(values, 0.2) == 0.3
    assert quantile(values, 0.99) == 0.9


def test_build_profile_sets_the_threshold_on_the_validation_sources() -> None:
    pairs = [("the library for python", "python library")] * 3 + [("a tool", "tool")] * 3
    valid = ["the library", "the library for python", "cats and dogs and birds", "a tool"]
    profile = build_profile(pairs, valid, quantile_below=0.25)
    assert profile.known_words == frozenset({"the", "library", "for", "python", "a", "tool"})
    assert profile.summary_words == frozenset({"python", "library", "tool"})
    shares = sorted(profile.known_share(word_set(text)) for text in valid)
    assert shares[0] == pytest.approx(3 / 7)  # "cats and dogs and birds": 0 of 4 known
    assert profile.threshold == pytest.approx(shares[1])  # the 25% quantile of 4 shares
    assert profile.stats["validation_documents"] == 4
    assert profile.stats["validation_flagged"] == 0.25
    with pytest.raises(ValueError, match="needs training pairs"):
        build_profile([], valid)


def test_profile_round_trips_through_metadata_json() -> None:
    profile = DomainProfile(
        known_words=frozenset({"", "library", "c++", "x86_64"}),  # "" is a word_set member
        summary_words=frozenset(),
        threshold=0.65,
        stats={"training_documents": 7},
    )
    metadata = json.loads(json.dumps({METADATA_KEY: profile.to_metadata()}))
    assert domain_profile(metadata) == profile
    assert domain_profile(metadata).stats == {"training_documents": 7}  # type: ignore[union-attr]
    assert domain_profile({}) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 99}, "version 99"),
        ({"known_words": ["library"]}, "word lists are strings"),
        ({"threshold": 1.5}, "must lie in"),
        ({"threshold": None}, "not a usable domain profile"),
    ],
)
def test_a_damaged_profile_is_refused_with_the_fix(change: dict[str, object], message: str) -> None:
    section = {**PROFILE.to_metadata(), **change}
    with pytest.raises(DomainError, match=message):
        domain_profile({METADATA_KEY: section})


def test_attach_profile_rewrites_config_json_alone(tmp_path: Path, tiny_checkpoint: Path) -> None:
    directory = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, directory)
    (directory / "MODEL.md").write_text("notes kept beside the model\n")
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    plain = Summarizer.load(directory)
    assert plain.domain is None  # a model saved without a profile never flags

    attach_profile(directory, PROFILE)

    after = {p.name: p.read_bytes() for p in directory.iterdir()}
    assert after.keys() == before.keys()
    assert [name for name in after if after[name] != before[name]] == ["config.json"]
    old_config, new_config = (json.loads(d["config.json"]) for d in (before, after))
    assert new_config["metadata"].pop(METADATA_KEY) == PROFILE.to_metadata()
    assert new_config == old_config
    loaded = Summarizer.load(directory)
    assert loaded.domain == PROFILE
    assert loaded.fingerprint != plain.fingerprint  # the fingerprint covers config.json


def test_attach_profile_refuses_a_directory_that_is_no_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        attach_profile(tmp_path / "missing", PROFILE)


def test_training_saves_the_domain_in_the_best_checkpoint(tmp_path: Path) -> None:
    pairs = tiny_pairs(24)
    config = TrainConfig(
        vocab_size=64, batch_tokens=400, max_steps=4, eval_every=4, valid_sample=2, patience=0
    )
    fit(pairs, pairs[:6], tmp_path, model_config=TINY_MODEL, train_config=config, progress=False)
    domain = Summarizer.load(tmp_path / BEST_DIR).domain
    assert domain is not None
    assert domain == build_profile(pairs, [text for text, _ in pairs[:6]])
    assert Summarizer.load(tmp_path / LAST_DIR).domain is None  # for --resume only


def test_evaluation_counts_novel_word_and_out_of_domain_with_the_models_domain() -> None:
    sources = ["the library for python", "Shares fell sharply on Wall Street"]
    references = ["development files", "Wall Street"]  # house style; words of the source
    report = evaluate_predictions(references, references, sources=sources, domain=PROFILE)
    assert report.quality is not None
    assert report.quality["reference"]["novel_word"] == 0.0
    assert report.quality["reference"]["out_of_domain"] == pytest.approx(50.0)
    assert "source far from the model's training domain" in format_report(report)
    plain = evaluate_predictions(references, references, sources=sources)
    assert plain.quality is not None and plain.quality["reference"]["novel_word"] == 50.0
    assert "out_of_domain" not in plain.quality["reference"]
