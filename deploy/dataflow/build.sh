#!/usr/bin/env bash
# Build and push the worker image, then the Flex Template spec that launches it.
#   PROJECT=my-project REGION=us-central1 BUCKET=my-bucket REPOSITORY=my-repo \
#       deploy/dataflow/build.sh [cpu|cuda]
# Prints IMAGE=... and TEMPLATE=... for launch.sh.
set -euo pipefail
: "${PROJECT:?set PROJECT}" "${REGION:?set REGION}" "${BUCKET:?set BUCKET (no gs://)}"
: "${REPOSITORY:?set REPOSITORY (an Artifact Registry Docker repository)}"
variant=${1:-cpu}
cd "$(dirname "$0")/../.."
tag=${TAG:-$(git rev-parse --short HEAD)-$variant}
image=${IMAGE:-$REGION-docker.pkg.dev/$PROJECT/$REPOSITORY/s2s-summarize:$tag}
template=${TEMPLATE:-gs://$BUCKET/templates/s2s-summarize-$tag.json}

python deploy/dataflow/flex_template.py --check  # metadata.json matches the pipeline's flags
docker build -f deploy/Dockerfile --build-arg TORCH_VARIANT="$variant" -t "$image" .
docker push "$image"
gcloud dataflow flex-template build "$template" \
    --image "$image" \
    --sdk-language PYTHON \
    --metadata-file deploy/dataflow/metadata.json \
    --project "$PROJECT"
echo "IMAGE=$image"
echo "TEMPLATE=$template"
