"""Every measured figure README and the docs state, checked against the result file it comes from.

Each ``Figure`` is one sentence or table row: the document, its exact text with ``{}`` where the
figures stand, the result file they come from, and how each is read from the file and written.
The test fails when a file says something else, when the document no longer holds the text, or
when the document does not name the file. Result files are kept per sitting
(``benchmarks/results/<date>/``, benchmarks/sitting.py), so a file, once cited, keeps its figures.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from benchmarks.sitting import result_stem, write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCUMENTS = (
    "README.md",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")),
    "deploy/README.md",
    "deploy/dataflow/gpu.options",
    "s2s_model/pretrained/debian-synopsis/MODEL.md",
    "benchmarks/RESULTS.md",
)
SITTING = re.compile(r"\d{4}-\d{2}-\d{2}")

MODEL_EVAL = "s2s_model/pretrained/debian-synopsis/eval-test.json"
EVAL_NOV24 = "benchmarks/results/2026-11-24/eval-test.json"
REUSE = "benchmarks/results/2026-11-29/reuse.json"
OPENNMT_S4 = "benchmarks/results/2026-11-29/opennmt.json"
GPU_1 = "benchmarks/results/2026-11-29/h200-1-all-parts.json"
GPU_2 = "benchmarks/results/2026-11-29/h200-2-defaults-grid.json"
GPU_3 = "benchmarks/results/2026-11-29/h200-3-after-save-fix-and-gpu-defaults.json"
GPU_4 = "benchmarks/results/2026-11-29/h200-4-peak-memory.json"
GPU_6 = "benchmarks/results/2026-11-29/h200-6-syncs-before.json"
GPU_7 = "benchmarks/results/2026-11-29/h200-7-after-sync-fix.json"
OPENNMT_S5 = "benchmarks/results/2026-11-30/opennmt.json"
DECODE_S5 = "benchmarks/results/2026-11-30/decode-2.json"
QUALITY_S5 = "benchmarks/results/2026-11-30/quality.json"
HOST_S6 = "benchmarks/results/2026-12-04/host.json"
JOBS_S6 = "benchmarks/results/2026-12-04/opennmt_jobs.json"
DOMAIN = "benchmarks/results/2026-12-05/domain.json"
TRAIN_BUDGET = "benchmarks/results/2026-12-05/train-budget.json"
NEWS = "benchmarks/results/2026-12-05/cnndm-news.json"
RECIPE = "benchmarks/results/2026-12-05/opennmt_recipe.json"
MODEL_MD = "s2s_model/pretrained/debian-synopsis/MODEL.md"

# Rows of the files' lists, by what they hold.
FP32_1_THREAD, FP32_2_PROCESSES, INT8_SHORTLIST, ONMT_1_THREAD, ONMT_2_THREADS = 0, 2, 3, 4, 5
EXACT, INT8, INT8_SHORTLIST_2000, BEAM_2 = 0, 1, 4, 6
CPU_DEFAULTS, GPU_DEFAULTS, FP32_96K, BF16_96K = 0, 6, 3, 8
INSTANT, DEVICE, DEVICE_OVERLAP = 0, 1, 2

Read = Callable[[Any], float]


def at(path: str) -> Read:
    """The value at a dotted path (list indices as numbers): ``at("rows.0.best_s")``."""

    def read(data: Any) -> float:
        for key in path.split("."):
            data = data[int(key)] if isinstance(data, list) else data[key]
        return float(data)

    return read


@dataclass(frozen=True)
class Figure:
    document: str
    text: str  # the document's exact text, "{}" where each figure stands
    result: str  # the file the figures come from, from the repository root
    figures: tuple[tuple[Read, str], ...]  # (how to read it, how the document writes it)

    def expected(self) -> str:
        data = load(self.result)
        return self.text.format(*(written(read(data), form) for read, form in self.figures))


def written(value: float, form: str) -> str:
    if form == "sci":  # 2.7e-7, as prose writes it
        mantissa, exponent = f"{value:.1e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return format(value, form)


@cache
def load(result: str) -> Any:
    return json.loads((ROOT / result).read_text(encoding="utf-8"))


@cache
def document(name: str) -> str:
    """The document with its line breaks and runs of spaces as single spaces: prose rewraps."""
    return " ".join((ROOT / name).read_text(encoding="utf-8").split())


def speedup(path_a: str, path_b: str) -> Read:
    return lambda data: at(path_a)(data) / at(path_b)(data)


FIGURES = (
    # README: the bundled model (s2s_model/pretrained/debian-synopsis/eval-test.json).
    Figure("README.md", "scores ROUGE-L {} on its 1,155-document test split against {} for the "
           "best lead-N baseline, with {}% of summaries holding a glued or cut word and {}% "
           "repeating a content word", MODEL_EVAL,
           ((at("system.rougeL"), ".1f"), (at("lead.scores.rougeL"), ".1f"),
            (at("quality.system.unknown_word"), ".1f"), (at("quality.system.repeat"), ".1f"))),
    Figure("README.md", "ROUGE-L {} before `whole_words` and `no_repeat_words`", EVAL_NOV24,
           ((at("system.rougeL"), ".1f"),)),
    # README: --reuse.
    Figure("README.md", "day 1 summarizes {} Debian package descriptions", REUSE,
           ((at("documents.day1"), ",.0f"),)),
    Figure("README.md", "| fresh | {} | {} s | 1 |", REUSE,
           ((at("runs.day2_fresh.decoded"), ",.0f"), (at("runs.day2_fresh.wall_s"), ".1f"))),
    Figure("README.md", "| `--reuse` day 1 | {} ({} reused) | {} s | {} (decoded: {}) |", REUSE,
           ((at("runs.day2_reuse.decoded"), ",.0f"), (at("runs.day2_reuse.reused"), ",.0f"),
            (at("runs.day2_reuse.wall_s"), ".1f"), (at("day2_reuse_vs_fresh.wall_ratio"), ".2f"),
            (at("day2_reuse_vs_fresh.decoded_ratio"), ".2f"))),
    Figure("README.md", "start-up and exit ({} s of the {} s fall outside the manifest's "
           "`duration_s`)", REUSE,
           ((lambda r: r["runs"]["day2_reuse"]["wall_s"] - r["runs"]["day2_reuse"]["job_s"], ".1f"),
            (at("runs.day2_reuse.wall_s"), ".1f"))),
    # README: Coming from OpenNMT-py.
    Figure("README.md", "give OpenNMT-py's summaries on {} of {} documents (LSTM) and {} of {} "
           "(GRU)", RECIPE,
           ((at("models.onmt-copy.agreement_opennmt_batch_1.identical"), ",.0f"),
            (at("models.onmt-copy.agreement_opennmt_batch_1.docs"), ",.0f"),
            (at("models.onmt-copy-gru.agreement_opennmt_batch_1.identical"), ",.0f"),
            (at("models.onmt-copy-gru.agreement_opennmt_batch_1.docs"), ",.0f"))),
    Figure("README.md", "only {} and {} of 1,000 agree", RECIPE,
           ((at("models.onmt-copy.agreement_opennmt_batch_64.identical"), ".0f"),
            (at("models.onmt-copy-gru.agreement_opennmt_batch_64.identical"), ".0f"))),
    Figure("benchmarks/RESULTS.md", "| LSTM copy + coverage | {} of {} | {} of 1,000 | {} / {} | "
           "{} | {} | {} |", RECIPE,
           ((at("models.onmt-copy.agreement_opennmt_batch_1.identical"), ",.0f"),
            (at("models.onmt-copy.agreement_opennmt_batch_1.docs"), ",.0f"),
            (at("models.onmt-copy.agreement_opennmt_batch_64.identical"), ".0f"),
            (at("models.onmt-copy.best_s.opennmt_batch_64_decode_s"), ".2f"),
            (at("models.onmt-copy.best_s.opennmt_batch_1_decode_s"), ".2f"),
            (at("models.onmt-copy.best_s.s2s_summarize_process_s"), ".2f"),
            (at("models.onmt-copy.best_s.summarizer_2x1_decode_s"), ".2f"),
            (at("models.onmt-copy.copied_unknown_words"), ".0f"))),
    Figure("benchmarks/RESULTS.md", "| GRU copy + coverage | {} of {} | {} of 1,000 | {} / {} | "
           "{} | {} | {} |", RECIPE,
           ((at("models.onmt-copy-gru.agreement_opennmt_batch_1.identical"), ",.0f"),
            (at("models.onmt-copy-gru.agreement_opennmt_batch_1.docs"), ",.0f"),
            (at("models.onmt-copy-gru.agreement_opennmt_batch_64.identical"), ".0f"),
            (at("models.onmt-copy-gru.best_s.opennmt_batch_64_decode_s"), ".2f"),
            (at("models.onmt-copy-gru.best_s.opennmt_batch_1_decode_s"), ".2f"),
            (at("models.onmt-copy-gru.best_s.s2s_summarize_process_s"), ".2f"),
            (at("models.onmt-copy-gru.best_s.summarizer_2x1_decode_s"), ".2f"),
            (at("models.onmt-copy-gru.copied_unknown_words"), ".0f"))),
    Figure("README.md", "the summaries are OpenNMT-py's on {} of {} documents", OPENNMT_S5,
           ((at("agreement.identical"), ",.0f"), (at("agreement.docs"), ",.0f"))),
    # README: Performance, session 5.
    Figure("README.md", "process start to exit | {} s | {} s | **{}x** |", OPENNMT_S5,
           ((at("jobs.onmt_translate_s"), ".2f"), (at("jobs.pipeline_default_s"), ".2f"),
            (at("job_speedup_default"), ".2f"))),
    Figure("README.md", "| free decoding, same weights, 2 cores | {} s | {} s | **{}x** |",
           OPENNMT_S5,
           ((lambda r: min(r["decode_s"]["opennmt_2_threads"]), ".2f"),
            (lambda r: min(r["decode_s"]["ours_2_search_threads"]), ".2f"),
            (at("summarizer_speedup"), ".2f"))),
    Figure("README.md", "| `s2s summarize` on 8 documents, process start to exit | | {} s (3 runs: "
           "{}-{} s) | |", OPENNMT_S5,
           ((at("jobs.s2s_summarize_8_documents_s"), ".2f"),
            (lambda r: min(r["jobs"]["runs_s"]["s2s_summarize_8_documents_s"]), ".2f"),
            (lambda r: max(r["jobs"]["runs_s"]["s2s_summarize_8_documents_s"]), ".2f"))),
    Figure("README.md", "| fixed work, exact fp32, 1 thread ({} of the matmul ceiling; OpenNMT-py "
           "{}) | {} s | {} s | {}x |", DECODE_S5,
           ((at(f"rows.{FP32_1_THREAD}.fraction_of_ceiling"), ".0%"),
            (at(f"rows.{ONMT_1_THREAD}.fraction_of_ceiling"), ".0%"),
            (at(f"rows.{ONMT_1_THREAD}.best_s"), ".1f"),
            (at(f"rows.{FP32_1_THREAD}.best_s"), ".1f"),
            (at(f"rows.{FP32_1_THREAD}.vs_opennmt_same_cores"), ".2f"))),
    Figure("README.md", "2 processes x 1 thread, against its 2 threads | {} s | {} s | {}x |",
           DECODE_S5,
           ((at(f"rows.{ONMT_2_THREADS}.best_s"), ".1f"),
            (at(f"rows.{FP32_2_PROCESSES}.best_s"), ".1f"),
            (at(f"rows.{FP32_2_PROCESSES}.vs_opennmt_2_threads"), ".2f"))),
    Figure("README.md", "`--quantize int8 --shortlist 2000`, 2 processes x 1 thread, against its "
           "2 threads | {} s | {} s | **{}x** ({}x median against median) |", DECODE_S5,
           ((at(f"rows.{ONMT_2_THREADS}.best_s"), ".1f"),
            (at(f"rows.{INT8_SHORTLIST}.best_s"), ".1f"),
            (at(f"rows.{INT8_SHORTLIST}.vs_opennmt_2_threads"), ".2f"),
            (speedup(f"rows.{ONMT_2_THREADS}.median_s", f"rows.{INT8_SHORTLIST}.median_s"),
             ".2f"))),
    Figure("README.md", "OpenNMT-py's two-thread fixed work took {} s and {} s in two rounds",
           DECODE_S5,
           ((lambda r: min(r["raw_seconds"]["OpenNMT-py 3.5.1, 2 thread(s)"]), ".1f"),
            (lambda r: max(r["raw_seconds"]["OpenNMT-py 3.5.1, 2 thread(s)"]), ".1f"))),
    Figure("README.md", "free decoding was {}x in session 4 with the same code", OPENNMT_S4,
           ((at("summarizer_speedup"), ".2f"),)),
    Figure("README.md", "`onmt_translate` {} s, ours {} s (**{}x**); `s2s summarize` on 8 "
           "documents {} s.", JOBS_S6,
           ((at("onmt_translate_s"), ".2f"), (at("pipeline_default_s"), ".2f"),
            (at("job_speedup_default"), ".2f"), (at("s2s_summarize_8_documents_s"), ".2f"))),
    # README: what to run at scale.
    Figure("README.md", "`--quantize int8 --shortlist 2000` decodes {}x as many documents per "
           "second as exact fp32 for {} ROUGE-L ({} vs {})", QUALITY_S5,
           ((speedup(f"rows.{INT8_SHORTLIST_2000}.docs_per_s", f"rows.{EXACT}.docs_per_s"), ".2f"),
            (at(f"rows.{INT8_SHORTLIST_2000}.rougeL_change"), "+.2f"),
            (at(f"rows.{INT8_SHORTLIST_2000}.rougeL"), ".2f"),
            (at(f"rows.{EXACT}.rougeL"), ".2f"))),
    Figure("README.md", "`--quantize int8` alone is {}x and lost nothing here ({};", QUALITY_S5,
           ((speedup(f"rows.{INT8}.docs_per_s", f"rows.{EXACT}.docs_per_s"), ".2f"),
            (at(f"rows.{INT8}.rougeL_change"), "+.2f"))),
    Figure("README.md", "(beam 2: {}x, {})", QUALITY_S5,
           ((speedup(f"rows.{BEAM_2}.docs_per_s", f"rows.{EXACT}.docs_per_s"), ".2f"),
            (at(f"rows.{BEAM_2}.rougeL_change"), "+.2f"))),
    # README: on GPUs.
    Figure("README.md", "this reaches {} of the device's rate, where one thread reached {}; the "
           "job's own work runs {} docs/s a core", HOST_S6,
           ((lambda r: r["results"][DEVICE_OVERLAP]["marginal_docs_per_s"]
             / r["results"][DEVICE_OVERLAP]["device_docs_per_s"], ".1%"),
            (lambda r: r["results"][DEVICE]["marginal_docs_per_s"]
             / r["results"][DEVICE]["device_docs_per_s"], ".1%"),
            (at(f"results.{INSTANT}.marginal_docs_per_s"), ",.0f"))),
    Figure("README.md", "the bundled model's summaries on CUDA are the CPU's, {} of {}, scores "
           "within {} (`-7`), with TF32 off", GPU_7,
           ((at("agreement.identical_summaries"), ".0f"), (at("agreement.documents"), ".0f"),
            (at("agreement.max_score_diff"), "sci"))),
    Figure("README.md", "the search runs {} docs/s, {}x the CPU defaults on the same GPU (`-2`)",
           GPU_2,
           ((at(f"defaults.rows.{GPU_DEFAULTS}.docs_per_s"), ",.0f"),
            (speedup(f"defaults.rows.{GPU_DEFAULTS}.docs_per_s",
                     f"defaults.rows.{CPU_DEFAULTS}.docs_per_s"), ".1f"))),
    Figure("README.md", "job took {}-", GPU_7, ((at("pipeline_scale.runs.0.seconds"), ".1f"),)),
    Figure("README.md", "-{} s with them (`-7`, `-3`)", GPU_3,
           ((at("pipeline_scale.runs.0.seconds"), ".1f"),)),
    Figure("README.md", "against {} s with the CPU defaults (`-2`)", GPU_2,
           ((at("pipeline_scale.runs.0.seconds"), ".1f"),)),
    Figure("README.md", "the reference-size model peaks at {} GiB there (`-4`)", GPU_4,
           ((at("peak_memory.peak_allocated_gib"), ".1f"),)),
    Figure("README.md", "every document still ends as a row: {} of {} summarized (`-1`)", GPU_1,
           ((at("out_of_memory.tries.0.summarized"), ".0f"),
            (at("out_of_memory.documents"), ".0f"))),
    Figure("README.md", "training runs (fp32 {}, bf16 {} updates/s for the reference size, `-3`)",
           GPU_3,
           ((at("training.fp32.steps_per_s"), ".1f"), (at("training.bf16.steps_per_s"), ".1f"))),
    Figure("README.md", "for models of this size ({}x in `-1`,", GPU_1,
           ((at("bf16.bf16_speedup"), ".2f"),)),
    Figure("README.md", "changes {} and", GPU_1,
           ((lambda r: 1 - r["bf16"]["identical_fraction"], ".1%"),)),
    Figure("README.md", "{}x in `-2`) and changes 5.0% and {} of summaries", GPU_2,
           ((speedup(f"defaults.rows.{BF16_96K}.docs_per_s",
                     f"defaults.rows.{FP32_96K}.docs_per_s"), ".2f"),
            (lambda r: 1 - r["defaults"]["rows"][BF16_96K]["identical_to_first"], ".1%"))),
    Figure("README.md", "a decode step still stops the GPU {} times (`-7`;", GPU_7,
           ((at("host_syncs.syncs_per_step"), ".2f"),)),
    Figure("README.md", "it was {}, `-6`)", GPU_6, ((at("host_syncs.syncs_per_step"), ".2f"),)),
    # README and docs/SCALING.md: capacity.
    Figure("README.md", "One torch thread decodes {} Debian package descriptions a second",
           QUALITY_S5, ((at(f"rows.{EXACT}.docs_per_s"), ".1f"),)),
    Figure("README.md", "so a million such documents take about {} worker-core-hours, and 100 "
           "million {} (with `--quantize int8 --shortlist 2000`, {} docs/s, about half that)",
           QUALITY_S5,
           ((lambda r: 1e6 / r["rows"][EXACT]["docs_per_s"] / 3600, ".1f"),
            (lambda r: 1e8 / r["rows"][EXACT]["docs_per_s"] / 3600, ".0f"),
            (at(f"rows.{INT8_SHORTLIST_2000}.docs_per_s"), ".1f"))),
    Figure("docs/SCALING.md", "| the Summarizer, exact fp32, one thread | {} docs/s |", QUALITY_S5,
           ((at(f"rows.{EXACT}.docs_per_s"), ".1f"),)),
    Figure("docs/SCALING.md", "`--quantize int8 --shortlist 2000` (ROUGE-L {}) | {} docs/s |",
           QUALITY_S5,
           ((at(f"rows.{INT8_SHORTLIST_2000}.rougeL_change"), "+.2f"),
            (at(f"rows.{INT8_SHORTLIST_2000}.docs_per_s"), ".1f"))),
    Figure("docs/SCALING.md", "one worker, marginal rate | {} docs/s |", HOST_S6,
           ((at(f"results.{INSTANT}.marginal_docs_per_s"), ",.0f"),)),
    Figure("docs/SCALING.md", "`s2s summarize` took {} s from process start to exit", JOBS_S6,
           ((at("s2s_summarize_8_documents_s"), ".2f"),)),
    Figure("docs/SCALING.md", "the search alone, {} docs/s with the bundled model", GPU_2,
           ((at(f"defaults.rows.{GPU_DEFAULTS}.docs_per_s"), ",.0f"),)),
    Figure("docs/SCALING.md", "Planning figure: the measured {} docs/s per worker core", QUALITY_S5,
           ((at(f"rows.{EXACT}.docs_per_s"), ".1f"),)),
    # docs/RELIABILITY.md, deploy/.
    Figure("docs/RELIABILITY.md", "a real one was split and retried and {} of {} documents were "
           "summarized", GPU_1,
           ((at("out_of_memory.tries.0.summarized"), ".0f"),
            (at("out_of_memory.documents"), ".0f"))),
    Figure("deploy/README.md", "peaked at {} GiB with the reference-size model", GPU_4,
           ((at("peak_memory.peak_allocated_gib"), ".1f"),)),
    Figure("deploy/dataflow/gpu.options", "reached {} of its rate against {} for one", HOST_S6,
           ((lambda r: r["results"][DEVICE_OVERLAP]["marginal_docs_per_s"]
             / r["results"][DEVICE_OVERLAP]["device_docs_per_s"], ".1%"),
            (lambda r: r["results"][DEVICE]["marginal_docs_per_s"]
             / r["results"][DEVICE]["device_docs_per_s"], ".1%"))),
    # MODEL.md: the test split (eval-test.json beside it; the earlier decoding's file of 11-24).
    Figure("s2s_model/pretrained/debian-synopsis/MODEL.md", "| **{}** | **{}** | **{}** | **{}** | "
           "{} | **{}%** | **{}%** |", MODEL_EVAL,
           ((at("system.rouge1"), ".2f"), (at("system.rouge2"), ".2f"),
            (at("system.rougeL"), ".2f"), (at("system.rougeLsum"), ".2f"),
            (at("mean_words.prediction"), ".2f"), (at("quality.system.unknown_word"), ".2f"),
            (at("quality.system.repeat"), ".2f"))),
    Figure("s2s_model/pretrained/debian-synopsis/MODEL.md", "no repeated trigrams) | {} | {} | {} "
           "| {} | {} |", EVAL_NOV24,
           ((at("system.rouge1"), ".2f"), (at("system.rouge2"), ".2f"),
            (at("system.rougeL"), ".2f"), (at("system.rougeLsum"), ".2f"),
            (at("mean_words.prediction"), ".2f"))),
    Figure("s2s_model/pretrained/debian-synopsis/MODEL.md", "best lead-N baseline: first {} words "
           "(N chosen on the test split itself) | {} | {} | {} | {} | {} |", MODEL_EVAL,
           ((at("lead.n"), ".0f"), (at("lead.scores.rouge1"), ".2f"),
            (at("lead.scores.rouge2"), ".2f"), (at("lead.scores.rougeL"), ".2f"),
            (at("lead.scores.rougeLsum"), ".2f"), (at("mean_words.lead"), ".2f"))),
    Figure("s2s_model/pretrained/debian-synopsis/MODEL.md", "| reference synopses | | | | | {} | "
           "{}% | {}% |", MODEL_EVAL,
           ((at("mean_words.reference"), ".2f"), (at("quality.reference.unknown_word"), ".2f"),
            (at("quality.reference.repeat"), ".2f"))),
    Figure("s2s_model/pretrained/debian-synopsis/MODEL.md", "**ROUGE-L is {} points above the best "
           "lead-N** (target: 8; {} against {})", MODEL_EVAL,
           ((lambda r: r["system"]["rougeL"] - r["lead"]["scores"]["rougeL"], ".1f"),
            (at("system.rougeL"), ".2f"), (at("lead.scores.rougeL"), ".2f"))),
    Figure("s2s_model/pretrained/debian-synopsis/MODEL.md", "the model's {} meets it by {} points",
           MODEL_EVAL,
           ((at("system.rougeL"), ".2f"), (lambda r: r["system"]["rougeL"] - 39.5, ".2f"))),
    Figure("s2s_model/pretrained/debian-synopsis/MODEL.md", "(the earlier decoding's {} met it",
           EVAL_NOV24, ((at("system.rougeL"), ".2f"),)),
    Figure("s2s_model/pretrained/debian-synopsis/MODEL.md", "`eval-test.json`: {} documents/s ({} "
           "documents in {} s, one run;", MODEL_EVAL,
           ((at("docs_per_second"), ".1f"), (at("n_docs"), ",.0f"), (at("seconds"), ".1f"))),
    Figure("s2s_model/pretrained/debian-synopsis/MODEL.md", "With the earlier decoding, {} "
           "documents/s ({} in {} s,", EVAL_NOV24,
           ((at("docs_per_second"), ".1f"), (at("n_docs"), ",.0f"), (at("seconds"), ".1f"))),
    Figure("s2s_model/pretrained/debian-synopsis/MODEL.md", "Outputs are shorter than the "
           "references ({} vs {} words)", MODEL_EVAL,
           ((at("mean_words.prediction"), ".2f"), (at("mean_words.reference"), ".2f"))),
    # README and MODEL.md: out_of_domain and novel_word (issue 24).
    Figure("README.md", "it flags {}% of {} CNN/DailyMail news articles and {}% of the {} Debian "
           "descriptions of its test split", DOMAIN,
           ((at("out_of_domain.cnndm_valid.flagged_pct"), ".1f"),
            (at("out_of_domain.cnndm_valid.documents"), ",.0f"),
            (at("out_of_domain.debian_test (held out).flagged_pct"), ".1f"),
            (at("out_of_domain.debian_test (held out).documents"), ",.0f"))),
    # RESULTS.md: s2s train --max_time 60s on 2,000 pairs (issue 25).
    Figure("benchmarks/RESULTS.md", "| 1 | {} s | {} | loss {}, ROUGE {} |", TRAIN_BUDGET,
           ((at("runs.0.wall_s"), ".1f"), (at("runs.0.updates"), ".0f"),
            (at("runs.0.validation_docs.loss_docs"), ".0f"),
            (at("runs.0.validation_docs.rouge_docs"), ".0f"))),
    Figure("benchmarks/RESULTS.md", "| 2 | {} s | {} | loss {}, ROUGE {} |", TRAIN_BUDGET,
           ((at("runs.1.wall_s"), ".1f"), (at("runs.1.updates"), ".0f"),
            (at("runs.1.validation_docs.loss_docs"), ".0f"),
            (at("runs.1.validation_docs.rouge_docs"), ".0f"))),
    Figure(MODEL_MD, "| CNN/DailyMail validation subset ({} news articles) | {}% |", DOMAIN,
           ((at("out_of_domain.cnndm_valid.documents"), ",.0f"),
            (at("out_of_domain.cnndm_valid.flagged_pct"), ".2f"))),
    Figure(MODEL_MD, "| the same, first 150 words / first 60 words | {}% / {}% |", DOMAIN,
           ((at("out_of_domain.cnndm_valid_first150.flagged_pct"), ".2f"),
            (at("out_of_domain.cnndm_valid_first60.flagged_pct"), ".2f"))),
    Figure(MODEL_MD, "| Debian test split ({}, held out) | {}% |", DOMAIN,
           ((at("out_of_domain.debian_test (held out).documents"), ",.0f"),
            (at("out_of_domain.debian_test (held out).flagged_pct"), ".2f"))),
    Figure(MODEL_MD, "| 100 kB of random bytes, as lines ({}) | {}% |", DOMAIN,
           ((at("out_of_domain.random_bytes_lines.documents"), ",.0f"),
            (at("out_of_domain.random_bytes_lines.flagged_pct"), ".2f"))),
    Figure(MODEL_MD, "On the human references it fell from {}% to {}% (test) and from {}% to "
           "{}% (validation); on this model's test summaries from {}% to {}%; on its summaries "
           "of {} news articles from {}% to {}%", DOMAIN,
           ((at("novel_word.references_test.before_pct"), ".2f"),
            (at("novel_word.references_test.after_pct"), ".2f"),
            (at("novel_word.references_valid.before_pct"), ".2f"),
            (at("novel_word.references_valid.after_pct"), ".2f"),
            (at("novel_word.outputs_test.before_pct"), ".2f"),
            (at("novel_word.outputs_test.after_pct"), ".2f"),
            (at("novel_word.outputs_cnndm_valid.documents"), ",.0f"),
            (at("novel_word.outputs_cnndm_valid.before_pct"), ".1f"),
            (at("novel_word.outputs_cnndm_valid.after_pct"), ".1f"))),
    # README and RESULTS.md: the news recipe's run (issue 26).
    Figure("README.md", "In {} minutes on 2 CPU cores ({} epochs) it reached ROUGE-1 {} and "
           "ROUGE-Lsum {} on {} other validation articles, where lead-3 scores {} and {}", NEWS,
           ((lambda d: at("training_seconds")(d) / 60, ".0f"), (at("epochs"), ".2f"),
            (at("rouge.model.rouge1"), ".2f"), (at("rouge.model.rougeLsum"), ".2f"),
            (at("eval_docs"), ".0f"), (at("rouge.lead-3.rouge1"), ".2f"),
            (at("rouge.lead-3.rougeLsum"), ".2f"))),
    Figure("benchmarks/RESULTS.md", "avg length penalty, trigram blocking) | {} | {} | {} | {} |",
           NEWS, tuple((at(f"rouge.model.{k}"), ".2f")
                       for k in ("rouge1", "rouge2", "rougeL", "rougeLsum"))),
    Figure("benchmarks/RESULTS.md", "| lead-3 | {} | {} | {} | {} |", NEWS,
           tuple((at(f"rouge.lead-3.{k}"), ".2f")
                 for k in ("rouge1", "rouge2", "rougeL", "rougeLsum"))),
    Figure("benchmarks/RESULTS.md", "{} updates ({} epochs) in {} minutes, {}-{} tokens/s per "
           "validation window", NEWS,
           ((at("steps"), ",.0f"), (at("epochs"), ".2f"),
            (lambda d: at("training_seconds")(d) / 60, ".0f"),
            (lambda d: min(d["tokens_per_second"]), ",.0f"),
            (lambda d: max(d["tokens_per_second"]), ",.0f"))),
    Figure("benchmarks/RESULTS.md", "Decoding: {} docs/s on the same CPU over the {} articles ({} "
           "source words on average", NEWS,
           ((at("docs_per_second"), ".1f"), (at("eval_docs"), ".0f"),
            (at("mean_words.source"), ".0f"))),
    Figure("benchmarks/RESULTS.md", "ROUGE-L {} without it, {} with `coverage_beta` 1, {} with 5",
           NEWS, ((at("coverage_beta_on_tune.0.rougeL"), ".2f"),
                  (at("coverage_beta_on_tune.1.rougeL"), ".2f"),
                  (at("coverage_beta_on_tune.5.rougeL"), ".2f"))),
)  # fmt: skip


def named_by(figure: Figure) -> str:
    """How a document names the figure's file: its sitting's folder, or the model's file name."""
    path = Path(figure.result)
    return f"{path.parent.name}/" if SITTING.fullmatch(path.parent.name) else path.name


@pytest.mark.parametrize("figure", FIGURES, ids=lambda f: f"{f.document}: {f.text[:50]}")
def test_a_figure_in_the_docs_is_the_one_its_result_file_holds(figure: Figure) -> None:
    assert figure.text.count("{}") == len(figure.figures), "one {} for each figure"
    text = document(figure.document)
    expected = " ".join(figure.expected().split())
    assert expected in text, (
        f"{figure.document} should say {expected!r} (from {figure.result}); "
        "write the file's figure there, or cite the file that holds the figure it states"
    )
    assert named_by(figure) in text, f"{figure.document} does not name {figure.result}"


def duration(seconds: float) -> str:
    """As the capacity table writes it: one decimal under 10, whole units from 10."""
    for unit, size in (("s", 1), ("min", 60), ("h", 3600)):
        value = seconds / size
        if unit == "h" or value < 60:
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")


def test_the_capacity_table_is_worked_out_from_the_measured_rate() -> None:
    rate = load(QUALITY_S5)["rows"][EXACT]["docs_per_s"]
    text = document("docs/SCALING.md")
    for label, documents in (("1 million", 1e6), ("100 million", 1e8)):
        seconds = documents / rate
        hours = seconds / 3600
        cells = [f"{hours:.1f}" if hours < 10 else f"{hours:.0f}"]
        cells += [duration(seconds / workers) for workers in (16, 100, 1000)]
        row = f"| {label} | " + " | ".join(cells) + " |"
        assert row in text, f"docs/SCALING.md should hold {row!r} at {rate} docs/s"


def cited_paths(text: str) -> set[str]:
    """Result files a document names: ``benchmarks/results/...`` anywhere, and in RESULTS.md
    (where paths are relative to benchmarks/results/) any ``<date>/<file>``."""
    full = re.findall(r"benchmarks/results/([\w./*<>-]+\.(?:jsonl|json|png))\b", text)
    dated = re.findall(r"(?<![\w/])(\d{4}-\d{2}-\d{2}/[\w.*-]+\.(?:jsonl|json|png))\b", text)
    return {path for path in (*full, *dated) if "<" not in path}


@pytest.mark.parametrize("name", DOCUMENTS)
def test_every_result_file_a_document_names_exists(name: str) -> None:
    text = (ROOT / name).read_text(encoding="utf-8")
    missing = sorted(path for path in cited_paths(text) if not any(RESULTS.glob(path)))
    assert not missing, f"{name} names result files that do not exist: {missing}"


def test_results_are_kept_in_one_folder_per_sitting() -> None:
    loose = [
        path.relative_to(RESULTS)
        for path in RESULTS.iterdir()
        if not SITTING.fullmatch(path.name) and path.name not in {".gitignore", "opennmt-work"}
    ]
    assert not loose, f"results outside a dated folder (benchmarks/sitting.py): {loose}"


def test_a_second_run_the_same_day_writes_beside_the_first(tmp_path: Path) -> None:
    first = result_stem("quality", folder=tmp_path)
    write_json(first.with_suffix(".json"), {"run": 1})
    second = result_stem("quality", folder=tmp_path)
    write_json(second.with_suffix(".json"), {"run": 2})
    assert (first.name, second.name) == ("quality", "quality-2")
    assert json.loads(first.with_suffix(".json").read_text()) == {"run": 1}
    (tmp_path / "sweeps.png").write_bytes(b"")  # a plot alone also takes its stem
    assert result_stem("sweeps", folder=tmp_path).name == "sweeps-2"
