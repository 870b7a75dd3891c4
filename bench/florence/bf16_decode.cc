// bench/florence: one decode step's matrix products with fp32 weights vs bf16-stored weights
// widened to fp32 on the fly, on this CPU (AVX2/FMA, no AVX512_BF16/AMX: oneDNN builds no bf16
// matmul here, so bf16 can only save memory traffic, not arithmetic).
//
// A decode step of Florence-2-base with 3 beams multiplies 3 rows by every decoder weight (6
// layers: self-attention q/k/v/out, cross-attention q/out, fc1, fc2) and by lm_head (51,289 x 768):
// ~356 MB of fp32 read once, so the step is bound by memory bandwidth. Halving the bytes should
// nearly halve the time. Measured three ways over the same shapes, same threads:
//   dnnl_fp32   oneDNN matmul, weights in place ([out, in], as nn/ runs the decoder)
//   own_fp32    the loop below on fp32 weights
//   own_bf16    the same loop on bf16 weights (upper 16 bits of fp32), widened in registers
// The two "own" loops differ only in the load, so their ratio is what the storage buys.
// The same products are also timed through the other ways a library offers (why nn::linear has its
// own small-M kernel, docs/decisions/compute-library.md):
//   nn_linear     celeriac's nn::linear (what the decoder runs)
//   dnnl_blocks   dnnl_sgemm on blocks of 512 outputs (nn::linear's previous decode path)
//   dnnl_packed   oneDNN matmul with the weights reordered once into its preferred layout
//   openblas      cblas_sgemm(RowMajor, NoTrans, Trans) over the whole weight
//   openblas_gemv cblas_sgemv once per row of x
// The activations are random; fp32 and bf16 results are compared (max relative difference) to
// show the widening is exact up to the weights' own rounding.
//
// Usage: celeriac_bench_florence_bf16 [--rounds 7]   (1 and 2 threads; prints JSON)
#include <cblas.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl.hpp>
#include <vector>

#include "nn/linear.h"
#include "nn/threading.h"

extern "C" void openblas_set_num_threads(int);  // OpenBLAS's own, not in cblas.h

namespace {

constexpr int kRows = 3;  // beams

struct Matrix {
  long n, k;  // [out, in]
  std::vector<float> w32;
  std::vector<uint16_t> w16;
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Round to nearest even, as torch's .to(bfloat16) does.
uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);
  return uint16_t(u >> 16);
}

__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) inline __m256 load8(const float* p) {
  return _mm256_loadu_ps(p);
}
// bf16 -> fp32 is exact: the 16 bits become the top half of the float.
__attribute__((target("avx2,fma"))) inline __m256 load8(const uint16_t* p) {
  __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

// y[r, n] = sum_k x[r, k] * w[n, k] for r < 3: each weight vector is loaded once and used for all
// three rows; output rows split across threads. k is a multiple of 8 for every shape here.
template <typename W>
__attribute__((target("avx2,fma"))) void gemv3(const float* x, const W* w, float* y, long n, long k,
                                               int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (long j = 0; j < n; ++j) {
    const W* row = w + j * k;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps();
    for (long i = 0; i < k; i += 8) {
      __m256 wv = load8(row + i);
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), wv, a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + i), wv, a1);
      a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 2 * k + i), wv, a2);
    }
    y[j] = hsum(a0);
    y[n + j] = hsum(a1);
    y[2 * n + j] = hsum(a2);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 7;
  for (int i = 1; i + 1 < argc; i += 2)
    if (!std::strcmp(argv[i], "--rounds")) rounds = std::max(1, std::atoi(argv[i + 1]));
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    std::fprintf(stderr, "needs AVX2 and FMA\n");
    return 1;
  }
  // Florence-2-base's decode-step weights (florence2.md section 9).
  const long d = 768, f = 3072, vocab = 51289, layers = 6;
  std::vector<Matrix> mats;
  for (long l = 0; l < layers; ++l) {
    for (int i = 0; i < 6; ++i) mats.push_back({d, d});
    mats.push_back({f, d});
    mats.push_back({d, f});
  }
  mats.push_back({vocab, d});
  unsigned seed = 1;
  double bytes32 = 0;
  for (Matrix& m : mats) {
    m.w32.resize(size_t(m.n) * m.k);
    m.w16.resize(m.w32.size());
    for (size_t i = 0; i < m.w32.size(); ++i) {
      seed = seed * 1664525u + 1013904223u;
      m.w16[i] = to_bf16(float((seed >> 8) & 0xffff) / 65536.0f - 0.5f);
      uint32_t u = uint32_t(m.w16[i]) << 16;
      std::memcpy(&m.w32[i], &u, 4);  // the same values in both storages
    }
    bytes32 += 4.0 * m.w32.size();
  }
  std::vector<float> x(kRows * f), y32(kRows * vocab), y16(kRows * vocab);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37 * double(i));

  // oneDNN fp32, weights described in place as [K, N] with strides (1, K): nn/'s matmul path.
  using tag = dnnl::memory::format_tag;
  using dt = dnnl::memory::data_type;
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  struct Prim {
    dnnl::matmul mm;
    dnnl::memory src, w, dst;
  };
  std::vector<Prim> prims;
  std::vector<float> ydnnl(kRows * vocab);
  for (Matrix& m : mats) {
    dnnl::memory::desc src_md({kRows, m.k}, dt::f32, tag::ab);
    dnnl::memory::desc w_md({m.k, m.n}, dt::f32, tag::ba);
    dnnl::memory::desc dst_md({kRows, m.n}, dt::f32, tag::ab);
    dnnl::matmul mm(dnnl::matmul::primitive_desc(dnnl::matmul::desc(src_md, w_md, dst_md), engine));
    prims.push_back({mm, dnnl::memory(src_md, engine, x.data()),
                     dnnl::memory(w_md, engine, m.w32.data()),
                     dnnl::memory(dst_md, engine, ydnnl.data())});
  }

  // The same weights prepacked for oneDNN (a second copy, kept apart from the in-place run).
  std::vector<Prim> packed;
  for (Matrix& m : mats) {
    dnnl::memory::desc src_md({kRows, m.k}, dt::f32, tag::ab);
    dnnl::memory::desc dst_md({kRows, m.n}, dt::f32, tag::ab);
    auto pd = dnnl::matmul::primitive_desc(
        dnnl::matmul::desc(src_md, dnnl::memory::desc({m.k, m.n}, dt::f32, tag::any), dst_md),
        engine);
    dnnl::memory plain(dnnl::memory::desc({m.k, m.n}, dt::f32, tag::ba), engine, m.w32.data());
    dnnl::memory w(pd.weights_desc(), engine);
    dnnl::reorder(plain, w).execute(stream, plain, w);
    stream.wait();
    packed.push_back({dnnl::matmul(pd), dnnl::memory(src_md, engine, x.data()), w,
                      dnnl::memory(dst_md, engine, ydnnl.data())});
  }

  auto own_step = [&](bool bf16, int threads) {
    for (const Matrix& m : mats) {
      if (bf16)
        gemv3(x.data(), m.w16.data(), y16.data(), m.n, m.k, threads);
      else
        gemv3(x.data(), m.w32.data(), y32.data(), m.n, m.k, threads);
    }
  };
  auto run_prims = [&](std::vector<Prim>& ps) {
    for (Prim& p : ps)
      p.mm.execute(stream, {{DNNL_ARG_SRC, p.src}, {DNNL_ARG_WEIGHTS, p.w}, {DNNL_ARG_DST, p.dst}});
    stream.wait();
  };
  auto dnnl_step = [&] { run_prims(prims); };
  auto packed_step = [&] { run_prims(packed); };
  auto nn_step = [&] {
    for (Matrix& m : mats) {
      celeriac::nn::Tensor xt = celeriac::nn::Tensor::view(x.data(), {kRows, m.k});
      celeriac::nn::Tensor wt = celeriac::nn::Tensor::view(m.w32.data(), {m.n, m.k});
      celeriac::nn::Tensor yt = celeriac::nn::Tensor::view(ydnnl.data(), {kRows, m.n});
      celeriac::nn::linear(xt, wt, nullptr, yt);
    }
  };
  auto blocks_step = [&] {
    constexpr long kBlock = 512;
    for (const Matrix& m : mats) {
#pragma omp parallel for schedule(static)
      for (long n0 = 0; n0 < m.n; n0 += kBlock) {
        const long nb = std::min(kBlock, m.n - n0);
        thread_local std::vector<float> block;
        block.resize(kRows * kBlock);
        dnnl_sgemm('N', 'T', kRows, nb, m.k, 1.0f, x.data(), m.k, m.w32.data() + n0 * m.k, m.k,
                   0.0f, block.data(), nb);
        for (int r = 0; r < kRows; ++r)
          std::memcpy(ydnnl.data() + r * m.n + n0, block.data() + r * nb, nb * sizeof(float));
      }
    }
  };
  auto openblas_step = [&] {
    for (const Matrix& m : mats)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, kRows, m.n, m.k, 1.0f, x.data(), m.k,
                  m.w32.data(), m.k, 0.0f, ydnnl.data(), m.n);
  };
  auto gemv_step = [&] {
    for (const Matrix& m : mats)
      for (int r = 0; r < kRows; ++r)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, m.n, m.k, 1.0f, m.w32.data(), m.k,
                    x.data() + r * m.k, 1, 0.0f, ydnnl.data() + r * m.n, 1);
  };
  auto timed = [](const std::function<void()>& fn) {
    double t0 = now_s();
    fn();
    return now_s() - t0;
  };

  // The variants take turns, round after round, so a burst of other load on a shared machine
  // hits all of them alike; the best round of each is kept (round 0 is a warm-up).
  struct Variant {
    const char* name;
    std::function<void()> run;
    double best = 1e30;
  };
  std::printf("{\"weights_mb_fp32\": %.1f, \"weights_mb_bf16\": %.1f, \"rounds\": %d",
              bytes32 / 1e6, bytes32 / 2e6, rounds);
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    celeriac::nn::set_num_threads(threads);
    // Two groups: OpenBLAS keeps its own pthreads spinning for a while after each call, and
    // OpenMP's team spins too, so the groups must not take turns with each other.
    std::vector<Variant> variants = {
        {"own_fp32", [&] { own_step(false, threads); }},
        {"own_bf16", [&] { own_step(true, threads); }},
        {"dnnl_fp32", dnnl_step},
        {"nn_linear", nn_step},
        {"dnnl_blocks", blocks_step},
        {"dnnl_packed", packed_step},
        {"openblas", openblas_step},
        {"openblas_gemv", gemv_step},
    };
    for (auto [first, last] : {std::pair{0, 6}, std::pair{6, 8}}) {
      for (int r = 0; r <= rounds; ++r)
        for (int i = first; i < last; ++i) {
          const double t = timed(variants[i].run);
          if (r > 0) variants[i].best = std::min(variants[i].best, t);
        }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let the spinning stop
    }
    own_step(false, threads);
    own_step(true, threads);
    double diff = 0;
    for (long i = 0; i < kRows * vocab; ++i)
      diff = std::max(diff, double(std::fabs(y32[i] - y16[i])) / (std::fabs(y32[i]) + 1e-3));
    std::printf(",\n \"t%d\": {", threads);
    for (const Variant& v : variants) std::printf("\"%s_ms\": %.2f, ", v.name, v.best * 1e3);
    std::printf("\"own_fp32_gbs\": %.2f, \"own_bf16_gbs\": %.2f, \"bf16_max_rel_diff\": %.1e}",
                bytes32 / variants[0].best / 1e9, bytes32 / 2 / variants[1].best / 1e9, diff);
  }
  std::printf("}\n");
  return 0;
}
