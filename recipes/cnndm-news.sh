#!/usr/bin/env bash
# A news summarizer: a pointer-generator with coverage (See et al. 2017) on the CNN/DailyMail
# subset in ../shared/data/cnndm-train-subset/ (issue 26).
#
# 1. data: `s2s corpus cnndm` drops empty and repeated rows, cuts sources to 400 words and targets
#    to 100, and draws two disjoint seeded samples of the validation split: tune.jsonl (validation
#    during training and the choice of decoding settings) and eval.jsonl (the scores);
# 2. train with recipes/cnndm-news.json for at most MAX_TIME; the trainer then picks the decoding
#    (beam, length penalty, minimum length, coverage penalty, trigram blocking) on tune.jsonl;
# 3. `s2s evaluate` on eval.jsonl (docs/s, the best lead-N words);
# 4. recipes/cnndm_model_card.py writes RUN/best/MODEL.md: ROUGE-1/2/L/Lsum beside lead-3 on the
#    same articles, the training curve, tokens/s.
#
# Environment: WORK (scratch dir, default build/cnndm-news), MAX_TIME (default 45m), THREADS
# (torch threads, default 2), DATA (the shared subset), TUNE_DOCS (100), EVAL_DOCS (500),
# DEVICE (auto), RESUME=1 to continue an interrupted run in WORK.
set -euo pipefail

main() {
    cd "$(dirname "$0")/.."
    local s2s=${S2S:-.venv/bin/s2s} python=${PYTHON:-.venv/bin/python}
    local work=${WORK:-build/cnndm-news} max_time=${MAX_TIME:-45m} threads=${THREADS:-2}
    local data=${DATA:-../shared/data/cnndm-train-subset}
    local fields=(--text_field article --summary_field highlights)
    # Sleeping OpenMP threads: on a shared CPU spinning ones slow training (recipes/debian-synopsis.sh).
    export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

    "$s2s" corpus cnndm "$work/data" --train_file "$data/cnndm_train_subset.jsonl.xz" \
        --valid_file "$data/cnndm_val_subset.jsonl.gz" \
        --tune_docs "${TUNE_DOCS:-100}" --eval_docs "${EVAL_DOCS:-500}"

    local resume=()
    if [[ "${RESUME:-0}" == 1 ]]; then resume=(--resume); else rm -rf "$work/run"; fi
    "$s2s" -v train --train "$work/data/train.jsonl" --valid "$work/data/tune.jsonl" \
        --output "$work/run" --config recipes/cnndm-news.json "${fields[@]}" \
        --max_time "$max_time" --threads "$threads" --device "${DEVICE:-auto}" \
        --no_progress "${resume[@]}" 2>&1 | tee -a "$work/train.log"

    "$s2s" evaluate "$work/data/eval.jsonl" --model "$work/run/best" "${fields[@]}" \
        --threads "$threads" --json_out "$work/eval.json" --predictions_out "$work/eval-predictions.txt"
    "$python" recipes/cnndm_model_card.py --work "$work"
    echo "model in $work/run/best ($(du -sh "$work/run/best" | cut -f1)); MODEL.md written there"
}

main "$@"; exit
