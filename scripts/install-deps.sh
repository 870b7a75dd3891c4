#!/usr/bin/env bash
# Installs what celeriac needs on Debian 12: the C++ build's packages and redis-server.
# Idempotent and quiet when everything is already there.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libhiredis-dev redis-server
  nlohmann-json3-dev libspdlog-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libssl-dev libcurl4-openssl-dev libboost-dev libboost-system-dev
  libjpeg62-turbo-dev libpng-dev libwebp-dev libgif-dev libjpeg-turbo-progs
  libopenblas-dev libdnnl-dev ocl-icd-opencl-dev clang-format libicu-dev
  python3 python3-venv python3-pip
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The packaged redis-server starts a system service on install; our tests and `make run`
# start their own servers on free ports, so the system one is left alone.
