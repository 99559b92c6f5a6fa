#!/usr/bin/env bash
# Regenerate the image's hash-locked requirements (needs PyPI; about 15 minutes):
#   bash deploy/lock.sh
# requirements.lock       deploy/requirements.in: everything but torch, for Linux x86_64 and
#                         the image's Python (3.11), every file pinned by sha256
# requirements-cuda.lock  torch==<pyproject's pin> from PyPI, whose Linux build is the CUDA
#                         one, with its NVIDIA libraries; constrained to requirements.lock
# The CPU torch is not locked by hash: PyTorch's CPU index (download.pytorch.org) was out of
# reach where these files were made. With it in reach, hash it too: pip download --no-deps
# --index-url https://download.pytorch.org/whl/cpu torch==VERSION+cpu, then pip hash the wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
PIP_TOOLS=pip-tools==7.6.2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Only the public index: no pip.conf, wheel folder or mirror of this machine in a lock.
export PIP_CONFIG_FILE=/dev/null
unset PIP_FIND_LINKS PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_CONSTRAINT PIP_REQUIRE_HASHES
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "$PIP_TOOLS"
compile=("$work/venv/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras
         --no-header)

"${compile[@]}" --output-file deploy/requirements.lock deploy/requirements.in

torch=$(sed -n 's/^ *"torch==\([^"]*\)".*/\1/p' pyproject.toml)
sed -n 's/^\([A-Za-z0-9_.-]*==[^ ]*\).*/\1/p' deploy/requirements.lock > "$work/constraints.txt"
printf -- '-c constraints.txt\ntorch==%s\n' "$torch" > "$work/requirements-cuda.in"
(cd "$work" && "${compile[@]}" --output-file requirements-cuda.lock requirements-cuda.in)
cp "$work/requirements-cuda.lock" deploy/requirements-cuda.lock
echo "locked: deploy/requirements.lock, deploy/requirements-cuda.lock (torch $torch)"
