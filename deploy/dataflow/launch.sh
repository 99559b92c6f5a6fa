#!/usr/bin/env bash
# Run the Flex Template built by build.sh:
#   PROJECT=... REGION=... BUCKET=... IMAGE=... TEMPLATE=... \
#       deploy/dataflow/launch.sh cpu|gpu INPUT_GLOB OUTPUT_DIR [NAME=VALUE ...]
# NAME=VALUE: more template parameters, i.e. pipeline flags without dashes (metadata.json),
# switches as overwrite=true. Worker settings are those of cpu.options / gpu.options.
# The template's launcher submits the job; whether it stays up to write _SUCCESS.json after
# the job ends is Dataflow's to decide: where the marker matters (schedules), launch directly
# with the .options files, which waits (deploy/README.md).
set -euo pipefail
: "${PROJECT:?}" "${REGION:?}" "${BUCKET:?}" "${IMAGE:?}" "${TEMPLATE:?}"
kind=${1:?cpu or gpu} input=${2:?input glob} output=${3:?output directory}
shift 3
# '^~^': gcloud's syntax for a list separator other than ',' (values may hold commas).
params="^~^input=$input~output=$output~sdk_container_image=$IMAGE"
case "$kind" in
  cpu)
    machine=n2-standard-4 workers=50 experiments=()
    params+="~number_of_worker_harness_threads=1~torch_threads=1"
    ;;
  gpu)
    machine=g2-standard-8 workers=10
    experiments=(--additional-experiments=no_use_multiple_sdk_containers)
    params+="~dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
    params+="~number_of_worker_harness_threads=4~device=cuda~max_batch_tokens=60000"
    params+="~batch_window=2048"
    ;;
  *) echo "first argument: cpu or gpu, not '$kind'" >&2; exit 2 ;;
esac
for extra in "$@"; do params+="~$extra"; done
gcloud dataflow flex-template run "s2s-summarize-$(date -u +%Y%m%d-%H%M%S)" \
    --template-file-gcs-location "$TEMPLATE" \
    --project "$PROJECT" \
    --region "$REGION" \
    --temp-location "gs://$BUCKET/tmp" \
    --worker-machine-type "$machine" \
    --max-workers "$workers" \
    "${experiments[@]}" \
    --parameters "$params"
