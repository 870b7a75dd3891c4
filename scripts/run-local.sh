#!/usr/bin/env bash
# `make run`: the whole local stack. Uses REDIS_URL when it answers; otherwise starts a
# redis-server of its own (data under .cache/redis) and points everything at it.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}

if ! redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1; then
  port=6379
  while redis-cli -p "$port" ping >/dev/null 2>&1 || ss -ltn | grep -q ":$port "; do port=$((port + 1)); done
  mkdir -p .cache/redis
  echo "run-local: starting redis-server on 127.0.0.1:$port"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$PWD/.cache/redis" --appendonly yes \
    --daemonize yes --pidfile "$PWD/.cache/redis/redis.pid" --logfile "$PWD/.cache/redis/redis.log"
  trap 'kill "$(cat .cache/redis/redis.pid)" 2>/dev/null || true' EXIT
  REDIS_URL=redis://127.0.0.1:$port/0
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
export REDIS_URL
echo "run-local: REDIS_URL=$REDIS_URL"
"$BUILD/celeriac" worker --loglevel info "$@"
