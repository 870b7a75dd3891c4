// bench/florence machine probe: the two ceilings the engine's stage times are judged against.
//   GEMM peak   oneDNN fp32 matmul, large square (weights reordered once into the primitive's
//               layout, as nn/ does at load), 1 and 2 threads: the vision encoder's share of the
//               peak is its FLOPs / time / this rate.
//   read rate   a STREAM-like sum over a buffer far larger than the caches, 1 and 2 threads: a
//               decode step reads every decoder and lm_head weight once, so weight bytes / this
//               rate is the step's lower bound. On huge pages (the decoder's weights are), and
//               over 4 KiB pages for comparison (bench/common/read_rate.h).
// The same measurement as bench/gemm (whose shapes are the model's; this one wants the machine's
// best case) in a small binary with JSON output for run.sh. Best of several runs: on a shared
// machine the fastest run is the least disturbed one.
//
// Usage: celeriac_bench_florence_probe [--size 2048] [--min-time-s 0.5] [--buffer-mib 512]
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <vector>

#include "read_rate.h"

namespace {

using celeriac::bench::read_gbs;
using celeriac::bench::time_best;

double gemm_gflops(long n, int threads, double min_time_s) {
  using tag = dnnl::memory::format_tag;
  using dt = dnnl::memory::data_type;
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  std::vector<float> x(size_t(n) * n), w(size_t(n) * n), y(size_t(n) * n);
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = float(i % 97) / 97.0f - 0.5f;
    w[i] = float(i % 89) / 89.0f - 0.5f;
  }
  dnnl::memory::desc src_md({n, n}, dt::f32, tag::ab);
  dnnl::memory::desc w_plain_md({n, n}, dt::f32, tag::ba);  // PyTorch Linear weight [out, in]
  dnnl::memory::desc w_any_md({n, n}, dt::f32, tag::any);
  dnnl::memory::desc dst_md({n, n}, dt::f32, tag::ab);
  // oneDNN 2.x API (Debian 12 ships 2.6). The thread count first: oneDNN's brgemm kernels (AVX-512
  // CPUs) fix their threads when the primitive is made, and then ask OpenMP for that many.
  omp_set_num_threads(threads);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, w_any_md, dst_md), engine);
  dnnl::matmul mm(pd);
  dnnl::memory src_mem(src_md, engine, x.data()), dst_mem(dst_md, engine, y.data());
  dnnl::memory w_plain(w_plain_md, engine, w.data()), w_packed(pd.weights_desc(), engine);
  dnnl::reorder(w_plain, w_packed).execute(stream, w_plain, w_packed);
  stream.wait();
  double t = time_best(
      [&] {
        mm.execute(
            stream,
            {{DNNL_ARG_SRC, src_mem}, {DNNL_ARG_WEIGHTS, w_packed}, {DNNL_ARG_DST, dst_mem}});
        stream.wait();
      },
      min_time_s);
  return 2.0 * n * n * n / t / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  long size = 2048;
  double min_time_s = 0.5;
  size_t buffer_mib = 512;
  for (int i = 1; i < argc; ++i) {
    const char* next = i + 1 < argc ? argv[i + 1] : "";
    if (!std::strcmp(argv[i], "--size")) {
      size = std::atol(next), ++i;
    } else if (!std::strcmp(argv[i], "--min-time-s")) {
      min_time_s = std::atof(next), ++i;
    } else if (!std::strcmp(argv[i], "--buffer-mib")) {
      buffer_mib = std::strtoul(next, nullptr, 10), ++i;
    } else {
      std::fprintf(stderr, "usage: %s [--size N] [--min-time-s S] [--buffer-mib MIB]\n", argv[0]);
      return 2;
    }
  }
  const double g1 = gemm_gflops(size, 1, min_time_s), g2 = gemm_gflops(size, 2, min_time_s);
  if (!__builtin_cpu_supports("avx2")) {
    std::fprintf(stderr, "needs AVX2\n");
    return 1;
  }
  const size_t bytes = buffer_mib << 20;
  const double b1 = read_gbs(bytes, 1, min_time_s), b2 = read_gbs(bytes, 2, min_time_s);
  const double s1 = read_gbs(bytes, 1, min_time_s, false), s2 = read_gbs(bytes, 2, min_time_s, false);
  std::printf(
      "{\"gemm_size\": %ld, \"gemm_gflops_1t\": %.2f, \"gemm_gflops_2t\": %.2f,\n"
      " \"read_buffer_mib\": %zu, \"read_gbs_1t\": %.2f, \"read_gbs_2t\": %.2f,\n"
      " \"read_gbs_1t_4k_pages\": %.2f, \"read_gbs_2t_4k_pages\": %.2f}\n",
      size, g1, g2, buffer_mib, b1, b2, s1, s2);
  return 0;
}
