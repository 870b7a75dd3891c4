#!/usr/bin/env bash
# Creates .venv-ml: the Python reference implementations (transformers, tokenizers, torch, Pillow)
# used only to (re)generate the committed golden fixtures and to run the model benchmarks.
# CI and `make test` never need it.
set -euo pipefail
cd "$(dirname "$0")/.."
req=scripts/requirements-ml.txt
if [ -f .venv-ml/.requirements ] && cmp -s "$req" .venv-ml/.requirements; then exit 0; fi
python3 -m venv .venv-ml
.venv-ml/bin/pip install -q --disable-pip-version-check -r "$req"
cp "$req" .venv-ml/.requirements
