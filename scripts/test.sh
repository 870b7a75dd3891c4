#!/usr/bin/env bash
# Runs every test: the C++ tests under CTest, then the Python interop tests against real
# Celery/kombu/Flower. Each suite starts its own redis-server on a free loopback port.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
status=0
(cd "$BUILD" && ctest --output-on-failure -j "$(nproc)") || status=1
if [ -d tests/interop ]; then
  CELERIAC_BIN="$PWD/$BUILD/celeriac" .venv/bin/python -m pytest tests/interop -q -p no:cacheprovider || status=1
fi
exit $status
