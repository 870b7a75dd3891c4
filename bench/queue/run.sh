#!/usr/bin/env bash
# bench/queue: builds celeriac, installs the peers (Python Celery from the test venv, BullMQ from
# npm into bench/queue/node_modules), then runs bench.py. Not a test: run it by hand.
#   bench/queue/run.sh [-n 20000] [--latency-n 1000]
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/install-deps.sh
scripts/setup-venv.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target celeriac celeriac_bench_roundtrip -j "$(nproc)"
if ! command -v node >/dev/null; then
  echo "bench/queue: node is needed for the BullMQ peer (apt-get install nodejs npm)" >&2
  exit 1
fi
(cd bench/queue && npm install --no-audit --no-fund --loglevel=error >/dev/null)
exec .venv/bin/python bench/queue/bench.py --json bench/out/queue.json "$@"
