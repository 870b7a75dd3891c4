// bench/florence: why a decode step's products do not reach the machine's read rate. One decode
// step of Florence-2-base (3 rows x every decoder weight and lm_head, 356 MB of fp32 on huge
// pages, as the decoder holds them) through three kernel designs, against a plain read of the
// same bytes:
//   plain             the read rate itself: a sum over each thread's half of every weight (the
//                     loop read_rate.h measures the bound with), one add per weight
//   nn_linear         nn::linear on row-major weights: 4 interleaved weight rows per pass (AVX2)
//                     with software prefetches of the next pass into L2 (the decoder's path where
//                     nothing is packed)
//   row_stream        one weight row after the other (AVX-512 only): a single sequential stream
//                     per thread, no software prefetch, 4 accumulators per row of x
//   nn_linear_packed  nn::linear on nn::PackedWeights, blocks of 64 outputs stored [K][64] on
//                     AVX-512 (32 on AVX2): a sequential stream, x broadcast, no horizontal sums,
//                     2.4x fewer instructions per weight line than nn_linear (the decoder's path)
// They take turns every round (this machine's read rate moves between ~33 and ~60 GB/s within
// seconds), and each round's time is divided by that round's plain time: the median of those
// ratios is printed per machine state (rounds whose plain read ran above / below 45 GB/s).
//
// Usage: celeriac_bench_florence_decode_kernels [--rounds 60]   (2 threads; prints JSON)
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "bench_clock.h"
#include "read_rate.h"
#include "nn/linear.h"
#include "nn/tensor.h"
#include "nn/threading.h"

using namespace celeriac;

namespace {

constexpr int kRows = 3;  // beams

// GCC 12 warns inside its own AVX-512 headers (their _mm512_undefined_* placeholders, a known
// false positive). The loops are unrolled by pragma, as in nn/linear.cc, so that the project's
// -O2 keeps every accumulator in a register.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// y[r][j] = x[r] · w[j] for rows j in [j0, j1); K a multiple of 64 (768 and 3072 here).
__attribute__((target("avx512f"))) void row_stream(const float* x, long k, const float* w,
                                                   long j0, long j1, float* y, long ldy) {
  for (long j = j0; j < j1; ++j) {
    const float* wj = w + j * k;
    __m512 acc[kRows][4];
#pragma GCC unroll 4
    for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 4
      for (int u = 0; u < 4; ++u) acc[r][u] = _mm512_setzero_ps();
    for (long i = 0; i < k; i += 64)
#pragma GCC unroll 4
      for (int u = 0; u < 4; ++u) {
        __m512 wv = _mm512_loadu_ps(wj + i + 16 * u);
        asm("" : "+v"(wv));  // one load of the weights, not one folded into each FMA
#pragma GCC unroll 4
        for (int r = 0; r < kRows; ++r)
          acc[r][u] = _mm512_fmadd_ps(_mm512_loadu_ps(x + r * k + i + 16 * u), wv, acc[r][u]);
      }
#pragma GCC unroll 4
    for (int r = 0; r < kRows; ++r)
      y[r * ldy + j] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]),
                                                          _mm512_add_ps(acc[r][2], acc[r][3])));
  }
}

#pragma GCC diagnostic pop

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 60;
  for (int i = 1; i + 1 < argc; i += 2)
    if (!std::strcmp(argv[i], "--rounds")) rounds = std::max(1, std::atoi(argv[i + 1]));
  if (!nn::PackedWeights::supported()) {
    std::printf("{\"skipped\": \"needs AVX2 with FMA\"}\n");
    return 0;
  }
  const bool avx512 = __builtin_cpu_supports("avx512f");  // row_stream's ISA
  const int threads = 2;
  nn::set_num_threads(threads);
  omp_set_num_threads(threads);

  // Florence-2-base's decode-step weights in the decoder's order (florence2.md section 9).
  const long d = 768, f = 3072, vocab = 51289;
  std::vector<nn::Tensor> originals;
  for (int l = 0; l < 6; ++l) {
    for (int i = 0; i < 6; ++i) originals.push_back(nn::Tensor::empty({d, d}));
    originals.push_back(nn::Tensor::empty({f, d}));
    originals.push_back(nn::Tensor::empty({d, f}));
  }
  originals.push_back(nn::Tensor::empty({vocab, d}));
  unsigned seed = 1;
  for (nn::Tensor& t : originals)
    for (long i = 0; i < t.numel(); ++i) {
      seed = seed * 1664525u + 1013904223u;
      t.mutable_data()[i] = float((seed >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
  const std::vector<nn::Tensor> weights = nn::copy_to_huge_pages(originals, nullptr);
  const std::vector<nn::PackedWeights> packed = nn::PackedWeights::from_all(weights);
  originals.clear();
  double bytes = 0;
  for (const nn::Tensor& w : weights) bytes += 4.0 * w.numel();

  const long ldy = vocab;  // outputs per row of y
  std::vector<float> x(kRows * f), y(kRows * ldy), y_row(kRows * ldy), y_nn(kRows * ldy);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.001f * float(i % 77) - 0.03f;
  volatile float sink = 0;

  auto plain = [&] {
    float total = 0;
#pragma omp parallel reduction(+ : total)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      for (const nn::Tensor& w : weights) {
        const long n = w.dim(0), k = w.dim(1), b = n * t / nt, e = n * (t + 1) / nt;
        total += bench::sum_block(w.data() + b * k, (e - b) * k);
      }
    }
    sink = sink + total;
  };
  auto linear = [&] {
    for (const nn::Tensor& w : weights) {
      const long n = w.dim(0), k = w.dim(1);
      nn::linear(nn::Tensor::view(x.data(), {kRows, k}), w, nullptr,
                 nn::Tensor::view(y.data(), {kRows, n}));
    }
  };
  // The last product (lm_head) is the one whose outputs are compared.
  auto rows = [&] {
    for (const nn::Tensor& w : weights) {
      const long n = w.dim(0), k = w.dim(1);
#pragma omp parallel
      {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        row_stream(x.data(), k, w.data(), n * t / nt, n * (t + 1) / nt, y_row.data(), ldy);
      }
    }
  };
  auto packed_linear = [&] {  // the decoder's path on AVX-512 CPUs
    for (const nn::PackedWeights& w : packed)
      nn::linear(nn::Tensor::view(x.data(), {kRows, w.cols()}), w, nullptr,
                 nn::Tensor::view(y_nn.data(), {kRows, w.rows()}));
  };
  struct Variant {
    const char* name;
    std::function<void()> run;
    std::vector<double> times;
  };
  std::vector<Variant> variants = {{"plain", plain}, {"nn_linear", linear}};
  if (avx512) variants.push_back({"row_stream", rows});
  variants.push_back({"nn_linear_packed", packed_linear});
  for (int r = 0; r <= rounds; ++r)
    for (Variant& v : variants) {
      const double t0 = bench::now_s();
      v.run();
      if (r > 0) v.times.push_back(bench::now_s() - t0);  // round 0 warms up
    }

  // The kernels compute the same lm_head products (another summation order each).
  double diff = 0;
  for (long j = 0; j < vocab; ++j)
    for (int r = 0; r < kRows; ++r) {
      const double ref = y[r * ldy + j];
      if (avx512) diff = std::max(diff, std::abs(y_row[r * ldy + j] - ref) / (std::abs(ref) + 1e-3));
      diff = std::max(diff, std::abs(y_nn[r * ldy + j] - ref) / (std::abs(ref) + 1e-3));
    }

  std::printf("{\"weights_mb\": %.1f, \"threads\": %d, \"rounds\": %d, \"packed_block\": %lld, "
              "\"max_rel_diff\": %.1e",
              bytes / 1e6, threads, rounds, static_cast<long long>(packed.front().block()), diff);
  for (const bool fast : {false, true}) {
    std::vector<size_t> picked;
    for (size_t i = 0; i < variants[0].times.size(); ++i)
      if ((bytes / variants[0].times[i] / 1e9 > 45.0) == fast) picked.push_back(i);
    std::printf(",\n \"%s\": {\"rounds\": %zu", fast ? "read_above_45_gbs" : "read_below_45_gbs",
                picked.size());
    for (const Variant& v : variants) {
      std::vector<double> ms, ratio;
      for (size_t i : picked) {
        ms.push_back(v.times[i] * 1e3);
        ratio.push_back(v.times[i] / variants[0].times[i]);
      }
      std::printf(", \"%s_ms\": %.2f, \"%s_to_plain\": %.3f", v.name, median(ms), v.name,
                  median(ratio));
    }
    std::printf("}");
  }
  std::printf("}\n");
  return 0;
}
