"""The CNN/DailyMail corpus builder (``s2s corpus cnndm``) and its lead-3 and ROUGE helpers."""

from __future__ import annotations

import gzip
import json
import lzma
from pathlib import Path

import pytest
from click.testing import CliRunner

from s2s_cli import cnndm_corpus
from s2s_cli.cnndm_corpus import Article
from s2s_cli.corpus_commands import corpus
from s2s_cli.train_commands import build_configs, load_config_file
from s2s_model.evaluation import split_sentences

STORY = (
    "london ( cnn ) the mayor said on monday that the bridge will close . `` it is old , '' he"
    " said . repairs start in may ! will it open again ? nobody knows ."
)


def article(n: int, text: str | None = None, highlights: str = "the bridge closes .") -> Article:
    body = f"story {n} . more ." if text is None else text
    return Article(f"train_000_{n}", body, highlights)


def test_empty_and_repeated_articles_are_dropped_the_first_kept() -> None:
    rows = [article(0), article(1, ""), article(2, text="story 0 . more ."), article(3)]
    rows.append(article(4, highlights=" "))
    kept, dropped = cnndm_corpus.clean(rows)
    assert [a.id for a in kept] == ["train_000_0", "train_000_3"]
    assert dropped == {"empty": 2, "duplicate": 1}


def test_cut_words_keeps_line_breaks() -> None:
    assert cnndm_corpus.cut_words("a b c\nd e\nf", 4) == "a b c\nd"
    assert cnndm_corpus.cut_words("a b\nc", 3) == "a b\nc"
    assert cnndm_corpus.cut_words("a  b   c", 2) == "a b"


def test_sentences_end_after_stops_and_keep_closing_quotes() -> None:
    assert split_sentences(STORY) == [
        "london ( cnn ) the mayor said on monday that the bridge will close .",
        "`` it is old , '' he said .",
        "repairs start in may !",
        "will it open again ?",
        "nobody knows .",
    ]
    assert split_sentences("he said `` no . '' then left .") == [
        "he said `` no . ''",
        "then left .",
    ]


def test_lead_is_the_first_three_sentences_one_per_line() -> None:
    assert cnndm_corpus.lead(STORY).splitlines() == split_sentences(STORY)[:3]
    assert cnndm_corpus.lead("one sentence only .") == "one sentence only ."


def test_samples_are_disjoint_seeded_and_in_split_order() -> None:
    rows = [article(n) for n in range(50)]
    tune, evaluation = cnndm_corpus.disjoint_samples(rows, (10, 20))
    assert (len(tune), len(evaluation)) == (10, 20)
    assert not {a.id for a in tune} & {a.id for a in evaluation}
    assert tune == sorted(tune, key=rows.index) and evaluation == sorted(evaluation, key=rows.index)
    assert cnndm_corpus.disjoint_samples(rows, (10, 20)) == [tune, evaluation]
    assert cnndm_corpus.disjoint_samples(rows, (10, 20), seed=1) != [tune, evaluation]
    # Spread over the split, not its first rows.
    assert max(rows.index(a) for a in evaluation) > 30
    with pytest.raises(cnndm_corpus.CnndmError, match="need 60 articles, have 50"):
        cnndm_corpus.disjoint_samples(rows, (30, 30))


def write_records(path: Path, rows: list[Article]) -> None:
    opener = lzma.open if path.name.endswith(".xz") else gzip.open
    with opener(path, "wt", encoding="utf-8") as handle:
        for row in rows:
            record = {"id": row.id, "chunk": "x", "article": row.article}
            handle.write(json.dumps({**record, "highlights": row.highlights}) + "\n")


def test_the_corpus_cuts_training_pairs_and_keeps_full_evaluation_references(
    tmp_path: Path,
) -> None:
    long_text = " ".join(f"w{i}" for i in range(500))
    long_summary = "\n".join(" ".join(f"s{j}x{i}" for i in range(30)) for j in range(5))
    train = [article(n, f"{long_text} {n}", long_summary) for n in range(6)] + [article(9, "")]
    valid = [Article(f"val_{n}", f"{long_text} {n}", long_summary) for n in range(8)]
    write_records(tmp_path / "train.jsonl.xz", train)
    write_records(tmp_path / "valid.jsonl.gz", valid)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        corpus,
        ["cnndm", str(out), "--train_file", str(tmp_path / "train.jsonl.xz"),
         "--valid_file", str(tmp_path / "valid.jsonl.gz"), "--tune_docs", "2",
         "--eval_docs", "3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "train 6, valid 8 articles" in result.output
    written = {n: cnndm_corpus.read_articles(out / f"{n}.jsonl") for n in ("train", "tune", "eval")}
    for row in written["train"] + written["tune"]:
        assert len(row.article.split()) == cnndm_corpus.SOURCE_WORDS
        assert len(row.highlights.split()) == cnndm_corpus.TARGET_WORDS
        assert row.highlights.count("\n") == 3  # 30 + 30 + 30 + 10 words
    assert [row.highlights for row in written["eval"]] == [long_summary] * 3
    assert len(cnndm_corpus.read_articles(out / "valid.jsonl")) == 8
    info = json.loads((out / "corpus_info.json").read_text())
    assert info["dropped"]["train"] == {"empty": 1, "duplicate": 0}
    assert info["samples"] == {"tune": 2, "eval": 3, "seed": cnndm_corpus.SAMPLE_SEED}


def test_a_missing_input_is_one_line_naming_the_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        corpus,
        ["cnndm", str(tmp_path / "out"), "--train_file", str(tmp_path / "none.jsonl.xz"),
         "--valid_file", str(tmp_path / "none.jsonl.gz")],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "none.jsonl.xz: cannot be read as CNN/DM JSONL" in result.output
    assert "Traceback" not in result.output


def test_scores_split_summaries_into_sentences_for_rouge_lsum() -> None:
    rows = [Article("a", STORY, "repairs start in may !\nthe mayor said the bridge will close .")]
    # The model's summary: the reference's two sentences, swapped, on one line.
    scores = cnndm_corpus.score(
        rows, ["the mayor said the bridge will close . repairs start in may !"]
    )
    assert scores["model"]["rouge1"] == pytest.approx(100.0)
    assert scores["model"]["rougeLsum"] == pytest.approx(100.0)
    assert scores["model"]["rougeL"] < 100.0  # one LCS over the whole text misses the swap
    lead3 = scores["lead-3"]
    assert 0.0 < lead3["rouge1"] < 100.0


def test_the_news_recipe_builds_a_pointer_generator_with_coverage() -> None:
    recipe = Path(__file__).parents[2] / "recipes" / "cnndm-news.json"
    model, train, decode, candidates = build_configs(load_config_file(str(recipe)), {})
    assert (model.copy, model.coverage) == (True, True)
    assert (train.max_src_tokens, train.max_tgt_tokens) == (400, 100)
    assert {c.coverage_beta for c in candidates} > {decode.coverage_beta}
    assert any(c.min_len != decode.min_len for c in candidates)
