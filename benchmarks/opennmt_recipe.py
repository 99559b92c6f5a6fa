"""OpenNMT-py's summarization recipe in both engines (issue 23): copy attention over an extended
vocabulary, coverage, bridge and mlp attention, with LSTM and with GRU cells.

    ONMT_ANCHOR=../shared/anchors/opennmt python -m benchmarks.opennmt_recipe [--docs 1000]
        [--rounds 2] [--runs onmt-copy onmt-copy-gru]

Each run folder ``$ANCHOR_DATA/<run>`` holds a model trained by the anchor's ``train.sh`` with
``TEMPLATE=lstm_copy.yaml.in TRAIN_STEPS=300`` (``RNN_TYPE=GRU`` for the GRU one) and
``onmt-loadable.pt``, the copy ``fix_copy_checkpoint.py`` writes so that OpenNMT-py 3.5.1 can load
its own model (see the anchor's README). We import the original ``model_step_300.pt``.

Both decode the same first ``--docs`` test documents (sources cut at 400 tokens), beam 4, max
length 30, length penalty avg (alpha 1), ``-max_length_ratio 0``, 2 threads each:

- OpenNMT-py through the anchor's ``bench_decode.py`` (its inference engine, what
  ``onmt_translate`` runs, with the ``copy=True`` that 3.5.1's engine forgets), in batches of 64
  sentences (its default) and of 1; decode seconds, model load excluded;
- ours through ``s2s summarize --compat opennmt`` (process start to exit, default settings), and
  through the Summarizer in process (decode seconds: two searches of one thread each, and one
  search on two intra-op threads).

Agreement: identical summaries against each OpenNMT-py batching. OpenNMT-py 3.5.1 collapses a
document's copy scores with another document's vocabulary once a document of its batch has
finished (``collapse_copy_scores`` reads ``batch["src_ex_vocab"][b]`` with ``b`` counting the
documents still decoding), so its batched output depends on the batch. One more, untimed
OpenNMT-py run in batches of 64 passes each document its own vocabulary (``batch_offset``, which
the translator already holds) to show that this alone accounts for the difference.

Writes benchmarks/results/<date>/opennmt_recipe.json (see benchmarks/sitting.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.decode import ANCHOR_DATA, ONMT_ENV, ONMT_VENV, SHARED
from benchmarks.opennmt_compare import DECODE, JOB_DECODE_FLAGS, ours_decode, sources
from benchmarks.sitting import machine, result_stem, write_json

ANCHOR = Path(os.environ.get("ONMT_ANCHOR", SHARED))
RUNS = ("onmt-copy", "onmt-copy-gru")
THREADS = 2
REPO = Path(__file__).resolve().parents[1]

# Runs bench_decode.py with OpenNMT-py's translator passing each still-decoding document its own
# copy vocabulary to collapse_copy_scores (the diagnosis above; never timed).
OWN_VOCABULARIES = """
import runpy, sys
import onmt.translate.translator as translator
original = translator.Translator._decode_and_generate
def own(self, decoder_in, enc_out, batch, src_len, src_map=None, step=None, batch_offset=None,
        return_attn=False):
    if self.copy_attn and batch_offset is not None:
        vocabs = batch["src_ex_vocab"]
        batch = dict(batch, src_ex_vocab=[vocabs[int(i)] for i in batch_offset])
    return original(self, decoder_in, enc_out, batch, src_len, src_map=src_map, step=step,
                    batch_offset=batch_offset, return_attn=return_attn)
translator.Translator._decode_and_generate = own
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def onmt_decode(
    model: Path, docs: int, work: Path, *, batch_size: int, own_vocabularies: bool = False
) -> tuple[float, list[str]]:
    """OpenNMT-py's decode seconds (load excluded) and predictions, in input order."""
    results, pred = work / "onmt.jsonl", work / "onmt.pred"
    results.unlink(missing_ok=True)
    script = [str(ANCHOR / "bench_decode.py")]
    if own_vocabularies:
        script = ["-c", OWN_VOCABULARIES, *script]
    subprocess.run(
        [str(ONMT_VENV / "bin" / "python"), *script, "--model", str(model),
         "--src", str(ANCHOR_DATA / "test.src"), "--n-docs", str(docs), "--max-src-tokens",
         "400", "--beam", "4", "--max-length", "30", "--min-length", "0", "--batch-type",
         "sents", "--batch-size", str(batch_size), "--threads", str(THREADS), "--work",
         str(work), "--pred-out", str(pred), "--results", str(results)],
        check=True, capture_output=True,
        env={**os.environ, "OMP_NUM_THREADS": str(THREADS), **ONMT_ENV},
    )  # fmt: skip
    seconds = float(json.loads(results.read_text().splitlines()[-1])["decode_s"])
    return seconds, pred.read_text().splitlines()


def s2s_summarize(checkpoint: Path, texts: list[str], work: Path) -> tuple[float, list[str]]:
    """``s2s summarize`` on one file of ``texts``: seconds from process start to exit, and the
    summaries in input order."""
    import pyarrow.parquet as pq

    src, out = work / "src.txt", work / "out"
    src.write_text("".join(t + "\n" for t in texts))
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "from s2s_cli.main import entry; entry()", "summarize", str(src),
         "--output", str(out), "--overwrite", "--model", str(checkpoint), *JOB_DECODE_FLAGS],
        check=True, capture_output=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    seconds = time.perf_counter() - start
    rows = pq.read_table(sorted((out / "summaries").glob("*.parquet"))).to_pylist()
    by_line = {int(row["doc_id"].rsplit(":", 1)[1]): row["summary"] for row in rows}
    return seconds, [by_line[line] for line in range(1, len(texts) + 1)]


def agreement(ours: list[str], theirs: list[str]) -> dict[str, Any]:
    """Identical summaries, and the first differences."""
    differences = [
        {"doc": i, "ours": mine, "opennmt": other}
        for i, (mine, other) in enumerate(zip(ours, theirs, strict=True))
        if mine != other
    ]
    same = len(ours) - len(differences)
    return {
        "identical": same,
        "docs": len(ours),
        "identical_fraction": round(same / len(ours), 4),
        "first_differences": differences[:10],
    }


def copied_unknown_words(texts: list[str], summaries: list[str], vocab: set[str]) -> int:
    """Summary words outside the vocabulary (so copied from the source through extended ids)."""
    return sum(
        word not in vocab and word in text.split()
        for text, summary in zip(texts, summaries, strict=True)
        for word in summary.split()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runs", nargs="+", default=list(RUNS))
    args = parser.parse_args()
    from s2s_cli.opennmt_import import import_opennmt
    from s2s_model import WordTokenizer, load_checkpoint

    texts = sources(args.docs)
    result: dict[str, Any] = {"decode": DECODE, "threads": THREADS, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runs = {name: ANCHOR_DATA / name for name in args.runs}
        for name, folder in runs.items():
            import_opennmt(folder / "model_step_300.pt", work / name)
        times: dict[str, dict[str, list[float]]] = {name: {} for name in runs}
        outputs: dict[str, dict[str, list[str]]] = {name: {} for name in runs}
        for _ in range(args.rounds):
            for name, folder in runs.items():
                timed, seen = times[name], outputs[name]
                loadable = folder / "onmt-loadable.pt"
                for batch in (64, 1):
                    seconds, seen[f"opennmt_batch_{batch}"] = onmt_decode(
                        loadable, args.docs, work, batch_size=batch
                    )
                    timed.setdefault(f"opennmt_batch_{batch}_decode_s", []).append(seconds)
                seconds, seen["s2s_summarize"] = s2s_summarize(work / name, texts, work)
                timed.setdefault("s2s_summarize_process_s", []).append(round(seconds, 2))
                for label, threads, searches in (("2x1", 1, 2), ("1x2", 2, 1)):
                    seconds, summaries = ours_decode(
                        work / name, texts, threads, search_threads=searches
                    )
                    timed.setdefault(f"summarizer_{label}_decode_s", []).append(round(seconds, 2))
                    seen[f"summarizer_{label}"] = [s.text for s in summaries]
        for name, folder in runs.items():
            seen = outputs[name]
            _, fixed = onmt_decode(
                folder / "onmt-loadable.pt", args.docs, work, batch_size=64, own_vocabularies=True
            )
            tokenizer = load_checkpoint(work / name).tokenizer
            assert isinstance(tokenizer, WordTokenizer)
            vocab = set(tokenizer.decode(range(4, tokenizer.vocab_size)).split())
            ours = seen["s2s_summarize"]
            best = {k: min(v) for k, v in times[name].items()}
            result["models"][name] = {
                "checkpoint": str(folder / "model_step_300.pt"),
                "model_config": load_checkpoint(work / name).model_config.to_dict(),
                "agreement_opennmt_batch_1": agreement(ours, seen["opennmt_batch_1"]),
                "agreement_opennmt_batch_64": agreement(ours, seen["opennmt_batch_64"]),
                "agreement_opennmt_batch_64_own_vocabularies": agreement(ours, fixed),
                "opennmt_batch_64_own_vocabularies_vs_batch_1": agreement(
                    fixed, seen["opennmt_batch_1"]
                ),
                "summarizer_same_as_s2s_summarize": all(
                    seen[f"summarizer_{label}"] == ours for label in ("2x1", "1x2")
                ),
                "copied_unknown_words": copied_unknown_words(texts, ours, vocab),
                "mean_summary_words": round(sum(len(s.split()) for s in ours) / len(ours), 2),
                "runs_s": times[name],
                "best_s": best,
                "speedup_summarizer_vs_opennmt_batch_64": round(
                    best["opennmt_batch_64_decode_s"] / best["summarizer_2x1_decode_s"], 2
                ),
                "speedup_summarizer_vs_opennmt_batch_1": round(
                    best["opennmt_batch_1_decode_s"] / best["summarizer_2x1_decode_s"], 2
                ),
            }
    result["machine"] = machine()
    write_json(result_stem("opennmt_recipe").with_suffix(".json"), result)
    for name, figures in result["models"].items():
        shown = {k: v for k, v in figures.items() if k not in ("model_config", "runs_s")}
        for key, value in shown.items():
            if isinstance(value, dict) and "first_differences" in value:
                shown[key] = {k: v for k, v in value.items() if k != "first_differences"}
        print(name, json.dumps(shown, indent=2))


if __name__ == "__main__":
    main()
