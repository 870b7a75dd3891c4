#!/usr/bin/env bash
# Creates the git-ignored Python environments that hold the test peers (real Celery, kombu,
# redis-py, Flower, pytest from PyPI, versions pinned in tests/requirements*.txt).
#   .venv       latest Celery 5.x
#   .venv-c54   Celery 5.4.0, the version the reference stack pins
set -euo pipefail
cd "$(dirname "$0")/.."

make_venv() {  # dir requirements-file
  local dir=$1 req=$2 stamp=$1/.requirements
  if [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then return; fi
  echo "setup-venv: creating $dir from $req"
  python3 -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
}
make_venv .venv tests/requirements.txt
make_venv .venv-c54 tests/requirements-celery54.txt
