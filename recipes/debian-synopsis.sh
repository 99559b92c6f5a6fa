#!/usr/bin/env bash
# Rebuild the bundled model s2s_model/pretrained/debian-synopsis/ from scratch: `make model`.
#
# 1. corpus: ../shared/data/debian-descriptions/ when it is there (a ready extract of Debian 12's
#    Translation-en), else apt's own lists (`apt-get -o Acquire::Languages=en update` fetches them);
# 2. train with recipes/debian-synopsis.json for at most MAX_TIME on the CPU;
# 3. copy the best checkpoint and its curves into the package, keeping MODEL.md;
# 4. evaluate it on the test split next to the best lead-N baseline (eval-test.json).
#
# Environment: WORK (scratch dir, default build/debian-synopsis), MODEL_DIR (where the model goes,
# default the bundled one), MAX_TIME (default 45m),
# THREADS (torch threads, default 2), SHARED_CORPUS (the ready extract), RESUME=1 to continue
# an interrupted run in WORK instead of starting afresh.
set -euo pipefail
cd "$(dirname "$0")/.."

S2S=${S2S:-.venv/bin/s2s}
WORK=${WORK:-build/debian-synopsis}
MAX_TIME=${MAX_TIME:-45m}
THREADS=${THREADS:-2}
SHARED_CORPUS=${SHARED_CORPUS:-../shared/data/debian-descriptions/debian_descriptions.jsonl.gz}
MODEL_DIR=${MODEL_DIR:-s2s_model/pretrained/debian-synopsis}
FIELDS=(--text_field description --summary_field synopsis)
# OpenMP threads that sleep instead of spinning when they wait: on a CPU shared with other work,
# spinning peers made 2-thread training up to 10x slower than 1 thread (measured on this machine).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

started=$(date +%s)
if [[ -f "$SHARED_CORPUS" ]]; then
    "$S2S" corpus debian "$WORK/data" --from_jsonl "$SHARED_CORPUS"
else
    echo "no $SHARED_CORPUS: building the corpus from apt's lists" >&2
    "$S2S" corpus debian "$WORK/data"
fi

resume=()
if [[ "${RESUME:-0}" == 1 ]]; then
    resume=(--resume)
else
    rm -rf "$WORK/run"
fi
"$S2S" -v train --train "$WORK/data/train.jsonl" --valid "$WORK/data/valid.jsonl" \
    --output "$WORK/run" --config recipes/debian-synopsis.json "${FIELDS[@]}" \
    --max_time "$MAX_TIME" --threads "$THREADS" "${resume[@]}"

mkdir -p "$MODEL_DIR"
cp "$WORK/run/best/config.json" "$WORK/run/best/model.safetensors" \
    "$WORK/run/best/tokenizer.model" "$WORK/run/curves.png" "$MODEL_DIR/"
cp "$WORK/data/corpus_info.json" "$MODEL_DIR/corpus_info.json"

"$S2S" evaluate "$WORK/data/test.jsonl" --model "$MODEL_DIR" "${FIELDS[@]}" \
    --threads "$THREADS" --json_out "$MODEL_DIR/eval-test.json" \
    --predictions_out "$WORK/test-predictions.txt"
echo "model in $MODEL_DIR ($(du -sh "$MODEL_DIR" | cut -f1)), made in $(( ($(date +%s) - started) / 60 )) min"
