#!/usr/bin/env bash
# bench/florence: Florence-2-base (random weights), PyTorch + transformers fp32 vs celeriac fp32, one
# after the other on the same cores, then the table with ratios and issue 5's goals. Not a test:
# run it by hand (several minutes; PyTorch's side dominates).
#   bench/florence/run.sh [--runs 2] [--new-tokens 64] [--image FILE] [--task '<CAPTION>']
# Environment: BENCH_CORES (default 0,1), FLORENCE_BENCH_DIR (default
# .cache/florence-2-base-random; the checkpoint is generated there when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."

runs=2
new_tokens=64
image=tests/data/image/images/10_jpeg_1600x1200.jpg  # a photo-sized JPEG (1600x1200)
task='<CAPTION>'
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --new-tokens) new_tokens=$2; shift 2 ;;
    --image) image=$2; shift 2 ;;
    --task) task=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--new-tokens N] [--image FILE] [--task T]" >&2; exit 2 ;;
  esac
done
cores=${BENCH_CORES:-0,1}
threads=$(($(tr -cd , <<<"$cores" | wc -c) + 1))
base=${FLORENCE_BENCH_DIR:-.cache/florence-2-base-random}
model=$base/native
out=bench/out
mkdir -p "$out"

[ -x .venv-ml/bin/python ] || scripts/setup-ml-venv.sh
if [ ! -f "$model/model.safetensors" ]; then
  echo "bench/florence: writing the base-size random checkpoint into $base (a few minutes)" >&2
  .venv-ml/bin/python scripts/fixtures/make_florence_base_random.py --out "$base" --no-reference
fi

cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets='celeriac_bench_florence_probe celeriac_bench_florence_bf16'
# The engine side is configured only once florence/model.cc and generate.cc build (CMakeLists.txt).
if ninja -C build-bench -t targets all | grep -q '^celeriac_bench_florence:'; then
  targets="$targets celeriac_bench_florence"
fi
ninja -C build-bench -j2 $targets >/dev/null
bin=build-bench/bench/florence

# Warm page cache for both loads: the goal is "load under 1 s from a warm page cache".
warm() { cat "$model"/model.safetensors >/dev/null; }
common=(--model "$model" --image "$image" --task "$task" --new-tokens "$new_tokens" --beams 3
        --threads "$threads" --runs "$runs")
echo "bench/florence: probe, then PyTorch, then celeriac on cores $cores ($threads thread(s))" >&2
taskset -c "$cores" "$bin"/celeriac_bench_florence_probe >"$out"/florence-probe.json
taskset -c "$cores" "$bin"/celeriac_bench_florence_bf16 >"$out"/florence-bf16.json
warm
OMP_NUM_THREADS=$threads TRANSFORMERS_VERBOSITY=error HF_HUB_OFFLINE=1 \
  taskset -c "$cores" .venv-ml/bin/python bench/florence/reference.py "${common[@]}" \
  >"$out"/florence-pytorch.json 2>"$out"/florence-pytorch.log
celeriac=()
if [ -x "$bin"/celeriac_bench_florence ]; then
  warm
  OMP_NUM_THREADS=$threads taskset -c "$cores" "$bin"/celeriac_bench_florence "${common[@]}" \
    >"$out"/florence-celeriac.json
  # The bf16 option (decode steps read bf16 copies of the decoder's weights), same request.
  warm
  OMP_NUM_THREADS=$threads taskset -c "$cores" "$bin"/celeriac_bench_florence "${common[@]}" \
    --bf16-decoder >"$out"/florence-celeriac-bf16.json
  # --bf16: that, and the encoders' products as bf16 GEMMs (on CPUs with AVX512_BF16 or AMX).
  warm
  OMP_NUM_THREADS=$threads taskset -c "$cores" "$bin"/celeriac_bench_florence "${common[@]}" \
    --bf16 >"$out"/florence-celeriac-bf16-all.json
  celeriac=(--celeriac "$out"/florence-celeriac.json
            --celeriac-bf16 "$out"/florence-celeriac-bf16.json
            --celeriac-bf16-all "$out"/florence-celeriac-bf16-all.json)
fi
# The read rate moves with the machine's neighbours: probe again, compare.py takes the higher.
taskset -c "$cores" "$bin"/celeriac_bench_florence_probe >"$out"/florence-probe-after.json
exec python3 bench/florence/compare.py --probe "$out"/florence-probe.json \
  --probe "$out"/florence-probe-after.json \
  --pytorch "$out"/florence-pytorch.json "${celeriac[@]}" --bf16 "$out"/florence-bf16.json \
  --config "$model"/config.json --json "$out"/florence.json
