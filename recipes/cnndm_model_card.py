"""Write MODEL.md for a recipes/cnndm-news.sh run: ROUGE beside lead-3, the curve, tokens/s.

    python recipes/cnndm_model_card.py --work build/cnndm-news

Reads WORK/data/eval.jsonl, WORK/eval-predictions.txt and WORK/eval.json (``s2s evaluate``),
WORK/run/trainer_state.json and WORK/run/best/config.json; writes WORK/run/best/MODEL.md and
WORK/scores.json (the figures, for benchmarks/RESULTS.md). Every figure is read or computed here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from s2s_cli.cnndm_corpus import read_articles, score

# See et al. 2017, Table 1 (their full training set, the CNN/DM test set), R-L.
PUBLISHED = {
    "seq2seq + attention (See et al.)": (31.33, 11.81, 28.83),
    "pointer-generator (See et al.)": (36.44, 15.66, 33.42),
    "pointer-generator + coverage (See et al.)": (39.53, 17.28, 36.38),
}


def figures(work: Path) -> dict[str, Any]:
    """Everything MODEL.md states, from the run's files."""
    rows = read_articles(work / "data" / "eval.jsonl")
    predictions = (work / "eval-predictions.txt").read_text(encoding="utf-8").splitlines()
    evaluation = json.loads((work / "eval.json").read_text(encoding="utf-8"))
    state = json.loads((work / "run" / "trainer_state.json").read_text(encoding="utf-8"))["state"]
    best = json.loads((work / "run" / "best" / "config.json").read_text(encoding="utf-8"))
    corpus = json.loads((work / "data" / "corpus_info.json").read_text(encoding="utf-8"))
    history = state["history"]
    train = best["metadata"]["train_config"]
    return {
        "eval_docs": len(rows),
        "rouge": score(rows, predictions[: len(rows)]),
        "lead_words": {"n": evaluation["lead"]["n"], **evaluation["lead"]["scores"]},
        "docs_per_second": evaluation["docs_per_second"],
        "mean_words": evaluation["mean_words"],
        "steps": state["step"],
        "epochs": history[-1]["epoch"] if history else 0.0,
        "training_seconds": state["elapsed"],
        "tokens_per_second": [h["tokens_per_second"] for h in history],
        "history": history,
        "hardware": best["metadata"]["hardware"],
        "best_step": best["metadata"]["step"],
        "decode": best["decode"],
        "decode_tuning": best["metadata"].get("decode_tuning", []),
        "model": best["model"],
        "train_config": train,
        "corpus": corpus,
        "size_mb": sum(f.stat().st_size for f in (work / "run" / "best").iterdir()) / 1e6,
    }


def model_card(f: dict[str, Any]) -> str:
    """MODEL.md's text."""
    model, lead3 = f["rouge"]["model"], f["rouge"]["lead-3"]
    hw = f["hardware"]
    device = hw.get("gpu") or f"{hw['cpu']}, {hw['torch_threads']} torch threads"
    speeds = f["tokens_per_second"]
    train = f["train_config"]
    lines = [
        "# news: a pointer-generator with coverage on the CNN/DailyMail subset",
        "",
        "Made by `recipes/cnndm-news.sh` (issue 26): a 1-layer bidirectional LSTM encoder and"
        " LSTM decoder with attention, copying and coverage (See et al. 2017), trained on"
        f" {f['corpus']['records']['train']:,} CNN/DM training pairs"
        " (`../shared/data/cnndm-train-subset/`, empty and repeated articles dropped,"
        " sources cut to 400 words, targets to 100).",
        "",
        f"## ROUGE on {f['eval_docs']} validation articles",
        "",
        f"A seeded sample spread over the {f['corpus']['records']['valid']:,}-article validation"
        " split (`eval.jsonl`), disjoint from the"
        f" {f['corpus']['samples']['tune']} articles training validated on and chose its"
        " decoding with; full references. rouge-score F1 x 100, Porter stemmer; ROUGE-Lsum over"
        " sentences, one per line (references as given, summaries and lead-3 split after"
        " . ! ?). See et al.'s R-L is pyrouge's summary-level LCS: compare it with R-Lsum.",
        "",
        "| system | R-1 | R-2 | R-L | R-Lsum | words |",
        "|---|---|---|---|---|---|",
        _row("this model", model, f["mean_words"]["prediction"]),
        _row("lead-3 (first three sentences)", lead3, None),
        _row(f"lead-{f['lead_words']['n']} words (best N on these)", f["lead_words"], None),
        "",
        "Published, for scale (See et al. 2017, full training set, the test set; R-1 / R-2 / R-L):",
        "",
        *(f"- {name}: {r1} / {r2} / {rl}" for name, (r1, r2, rl) in PUBLISHED.items()),
        "",
        _against_baseline(model),
        "",
        "## Training",
        "",
        f"- {f['steps']:,} updates, {f['epochs']:.2f} epochs, {f['training_seconds'] / 60:.0f}"
        f" minutes on {device} ({hw['device']}); best checkpoint: step {f['best_step']:,}.",
        f"- Throughput: {min(speeds):,.0f}-{max(speeds):,.0f} real source+target tokens/s per"
        " validation window."
        if speeds
        else "- Throughput: no validation window finished.",
        f"- Model: {_model_text(f['model'])}; {f['size_mb']:.1f} MB on disk.",
        f"- Training settings: `recipes/cnndm-news.json` (batch {train['batch_tokens']:,}"
        f" tokens, lr {train['lr']}, source/target cut at"
        f" {train['max_src_tokens']}/{train['max_tgt_tokens']} tokens).",
        "",
        "![training curves](curves.png)",
        "",
        "| update | epoch | minutes | train loss | valid NLL | R-1 | R-2 | R-L | tokens/s |",
        "|---|---|---|---|---|---|---|---|---|",
        *(_history_row(h) for h in f["history"]),
        "",
        "## Decoding",
        "",
        "Chosen by validation ROUGE-L among the recipe's candidates:",
        "",
        *(f"- {_decode_text(t['decode'])}: R-L {t['rougeL']:.2f}" for t in f["decode_tuning"]),
        "",
        f"Saved: {_decode_text(f['decode'])}.",
        f"Speed: {f['docs_per_second']:.2f} docs/s on the CPU above (`s2s evaluate`, all"
        f" {f['eval_docs']} articles).",
    ]
    return "\n".join(lines) + "\n"


def _against_baseline(model: dict[str, float]) -> str:
    """Where the model stands against See et al.'s seq2seq + attention (issue 26's target)."""
    r1, _, rl = PUBLISHED["seq2seq + attention (See et al.)"]
    gaps = f"R-1 {model['rouge1'] - r1:+.1f}, R-Lsum {model['rougeLsum'] - rl:+.1f}"
    reached = model["rouge1"] >= r1 and model["rougeLsum"] >= rl
    verdict = "reaches" if reached else "falls short of"
    return f"The model {verdict} the seq2seq + attention baseline ({gaps})."


def _row(name: str, scores: dict[str, float], words: float | None) -> str:
    cells = [f"{scores[k]:.2f}" for k in ("rouge1", "rouge2", "rougeL", "rougeLsum")]
    return f"| {name} | {' | '.join(cells)} | {'' if words is None else f'{words:.1f}'} |"


def _history_row(h: dict[str, Any]) -> str:
    rouge = " | ".join(f"{h.get(k, float('nan')):.2f}" for k in ("rouge1", "rouge2", "rougeL"))
    return (
        f"| {h['step']:,} | {h['epoch']:.2f} | {h['elapsed'] / 60:.0f} | {h['train_loss']:.3f} |"
        f" {h['valid_nll']:.3f} | {rouge} | {h['tokens_per_second']:,.0f} |"
    )


def _model_text(model: dict[str, Any]) -> str:
    keys = ("vocab_size", "embed_dim", "hidden_size", "num_layers", "attention", "copy")
    return ", ".join(f"{k} {model[k]}" for k in (*keys, "coverage"))


def _decode_text(decode: dict[str, Any]) -> str:
    keys = ("beam_size", "min_len", "max_len", "length_penalty", "alpha")
    shown = [f"{k} {decode[k]}" for k in keys]
    shown.append(f"no_repeat_ngram_size {decode['no_repeat_ngram_size']}")
    shown.append(f"coverage_beta {decode.get('coverage_beta', 0.0)}")
    return ", ".join(shown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, type=Path, help="the recipe's WORK directory")
    args = parser.parse_args()
    found = figures(args.work)
    (args.work / "run" / "best" / "MODEL.md").write_text(model_card(found), encoding="utf-8")
    kept = {k: v for k, v in found.items() if k not in ("history", "corpus", "decode_tuning")}
    (args.work / "scores.json").write_text(json.dumps(kept, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.work / 'run' / 'best' / 'MODEL.md'} and {args.work / 'scores.json'}")


if __name__ == "__main__":
    main()
