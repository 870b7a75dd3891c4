// bench/florence: one decode step's matrix products with fp32 weights vs bf16-stored weights
// widened to fp32 on the fly. For 3 rows the arithmetic is nothing on any CPU, bf16 instructions
// or not: what bf16 storage can save is memory traffic.
//
// A decode step of Florence-2-base with 3 beams multiplies 3 rows by every decoder weight (6
// layers: self-attention q/k/v/out, cross-attention q/out, fc1, fc2) and by lm_head (51,289 x 768):
// ~356 MB of fp32 read once, so the step is bound by memory bandwidth. Halving the bytes should
// nearly halve the time. Measured over the same shapes, same threads, in turns:
//   own_fp32      nn::linear on fp32 weights (its small-M loop: what the decoder runs)
//   own_bf16      nn::linear on nn::Bf16Weights of the same values (the --bf16-decoder option):
//                 the same loop, only the load differs, so the ratio is what the storage buys
//   dnnl_fp32     oneDNN matmul, weights in place ([out, in] described as K x N)
// and the other ways a library offers (why nn::linear has its own small-M loop,
// docs/decisions/compute-library.md):
//   dnnl_blocks   dnnl_sgemm on blocks of 512 outputs (nn::linear's previous decode path)
//   dnnl_packed   oneDNN matmul with the weights reordered once into its preferred layout
//   openblas      cblas_sgemm(RowMajor, NoTrans, Trans) over the whole weight
//   openblas_gemv cblas_sgemv once per row of x
// The activations are random; fp32 and bf16 results are compared (max relative difference): the
// weights hold bf16-exact values, so the widening must give the same products.
//
// Usage: celeriac_bench_florence_bf16 [--rounds 7]   (1 and 2 threads; prints JSON)
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <bit>
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

#include "bench_clock.h"
#include "nn/linear.h"
#include "nn/threading.h"

extern "C" void openblas_set_num_threads(int);  // OpenBLAS's own, not in cblas.h

namespace {

constexpr int kRows = 3;  // beams

struct Matrix {
  long n, k;  // [out, in]
  std::vector<float> w32;
  celeriac::nn::Bf16Weights w16;  // the same values (w32 holds bf16-exact numbers)
};

using celeriac::bench::now_s;

}  // namespace

int main(int argc, char** argv) {
  int rounds = 7;
  for (int i = 1; i + 1 < argc; i += 2)
    if (!std::strcmp(argv[i], "--rounds")) rounds = std::max(1, std::atoi(argv[i + 1]));
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
    for (float& w : m.w32) {
      seed = seed * 1664525u + 1013904223u;
      w = float((seed >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
    m.w16 = celeriac::nn::Bf16Weights::from(celeriac::nn::Tensor::view(m.w32.data(), {m.n, m.k}));
    for (size_t i = 0; i < m.w32.size(); ++i)  // the rounded values in both storages
      m.w32[i] = std::bit_cast<float>(uint32_t{m.w16.data()[i]} << 16);
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

  // nn::linear, fp32 or bf16 storage of the same values (the decoder's decode path).
  auto own_step = [&](bool bf16) {
    for (const Matrix& m : mats) {
      const celeriac::nn::Tensor xm = celeriac::nn::Tensor::view(x.data(), {kRows, m.k});
      float* out = bf16 ? y16.data() : y32.data();
      const celeriac::nn::Tensor y = celeriac::nn::Tensor::view(out, {kRows, m.n});
      if (bf16)
        celeriac::nn::linear(xm, m.w16, nullptr, y);
      else
        celeriac::nn::linear(xm, celeriac::nn::Tensor::view(m.w32.data(), {m.n, m.k}), nullptr, y);
    }
  };
  auto run_prims = [&](std::vector<Prim>& ps) {
    for (Prim& p : ps)
      p.mm.execute(stream, {{DNNL_ARG_SRC, p.src}, {DNNL_ARG_WEIGHTS, p.w}, {DNNL_ARG_DST, p.dst}});
    stream.wait();
  };
  auto dnnl_step = [&] { run_prims(prims); };
  auto packed_step = [&] { run_prims(packed); };
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
        {"own_fp32", [&] { own_step(false); }},
        {"own_bf16", [&] { own_step(true); }},
        {"dnnl_fp32", dnnl_step},
        {"dnnl_blocks", blocks_step},
        {"dnnl_packed", packed_step},
        {"openblas", openblas_step},
        {"openblas_gemv", gemv_step},
    };
    for (auto [first, last] : {std::pair{0, 5}, std::pair{5, 7}}) {
      for (int r = 0; r <= rounds; ++r)
        for (int i = first; i < last; ++i) {
          const double t = timed(variants[i].run);
          if (r > 0) variants[i].best = std::min(variants[i].best, t);
        }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let the spinning stop
    }
    own_step(false);
    own_step(true);
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
