// Linear and matmul on oneDNN. The weight operand is described to oneDNN as the K × N matrix it
// is in memory (format "ba" for [N, K] storage), used in place from the mapped file; on Zen 3
// (AVX2) bench/gemm measured no gain from letting oneDNN repack fp32 weights, on Zen 4 (AVX-512)
// 3-14% per DaViT shape, so GemmWeights keeps a reordered copy for callers that ask for one (the
// vision tower). Decode-size products have loops of their own below: over row-major weights
// (any AVX2 CPU) and over PackedWeights (the decoder's copies of its weights).
#include "nn/linear.h"

#include <immintrin.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <atomic>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "nn/dnnl_backend.h"
#include "nn/threading.h"
#include "nn/vmath.h"

namespace celeriac::nn {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// The operands of one product as oneDNN sees them: src M×K row-major, weights K×N in `w_tag`
// layout (tag::ba for [N, K] storage, tag::any for a GemmWeights copy), of one data type each.
struct Operands {
  const void* src;
  dt src_dt;
  const void* w;
  dt w_dt;
  tag w_tag;
  int64_t m, k, n;
};

dnnl::matmul::primitive_desc matmul_pd(const Operands& o, const Tensor* bias,
                                       const LinearOptions& options) {
  dnnl::memory::desc src_md({o.m, o.k}, o.src_dt, tag::ab);
  dnnl::memory::desc w_md({o.k, o.n}, o.w_dt, o.w_tag);
  dnnl::memory::desc bias_md({1, o.n}, dt::f32, tag::ab);
  dnnl::memory::desc dst_md({o.m, o.n}, dt::f32, tag::ab);
  dnnl::post_ops ops;
  // Order of the reference: bias inside the product, then the activation, then the residual.
  if (options.activation == Activation::kGelu)
    ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_erf, 0.0f, 0.0f);
  if (options.accumulate) ops.append_sum(1.0f);
  dnnl::primitive_attr attr = detail::scratchpad_attr();
  attr.set_post_ops(ops);
  auto desc = bias ? dnnl::matmul::desc(src_md, w_md, bias_md, dst_md)
                   : dnnl::matmul::desc(src_md, w_md, dst_md);
  return dnnl::matmul::primitive_desc(desc, attr, detail::cpu_engine());
}

// The matmul primitive for these operands, bias and post-ops (made once per thread and shape).
// Its `weights` descriptor is the layout the weights must be in: with tag::any, oneDNN's choice.
detail::Primitive& matmul_primitive(const Operands& o, const Tensor* bias,
                                    const LinearOptions& options) {
  const int64_t m = o.m, k = o.k, n = o.n;
  const std::string key =
      "matmul:" + std::to_string(m) + ":" + std::to_string(k) + ":" + std::to_string(n) + ":" +
      std::to_string(static_cast<int>(o.w_tag)) + ":" + std::to_string(static_cast<int>(o.src_dt)) +
      ":" + std::to_string(static_cast<int>(o.w_dt)) + ":" + (bias ? "b" : "-") +
      std::to_string(static_cast<int>(options.activation)) + (options.accumulate ? "+" : "=");
  return detail::cached_primitive(key, [&] {
    const dnnl::matmul::primitive_desc pd = matmul_pd(o, bias, options);
    return detail::Primitive{dnnl::matmul(pd), pd.scratchpad_desc(), pd.weights_desc()};
  });
}

void check_matmul(const Operands& o, const Tensor* bias, const Tensor& y) {
  if (y.rows() != o.m || y.dim(-1) != o.n)
    throw ShapeError("linear: output " + y.shape().to_string() + " for " + std::to_string(o.m) +
                     " x " + std::to_string(o.n));
  if (bias && bias->numel() != o.n)
    throw ShapeError("linear: bias " + bias->shape().to_string() +
                     " for N = " + std::to_string(o.n));
}

// dst M×N (fp32) = act(src · w + bias) (+ dst), the weights o.w in the layout `prim` reads.
void execute_matmul(const detail::Primitive& prim, const Operands& o, const Tensor* bias,
                    const Tensor& y) {
  auto& engine = detail::cpu_engine();
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC,
       dnnl::memory({{o.m, o.k}, o.src_dt, tag::ab}, engine, const_cast<void*>(o.src))},
      {DNNL_ARG_WEIGHTS, dnnl::memory(prim.weights, engine, const_cast<void*>(o.w))},
      {DNNL_ARG_DST, dnnl::memory({{o.m, o.n}, dt::f32, tag::ab}, engine, y.mutable_data())}};
  if (bias)
    args.emplace(DNNL_ARG_BIAS, dnnl::memory({{1, o.n}, dt::f32, tag::ab}, engine,
                                             const_cast<float*>(bias->data())));
  detail::execute(prim.prim, prim.scratchpad, args);
}

// dst M×N (fp32) = act(src · w + bias) (+ dst), weights as they are stored.
void run_matmul(const Operands& o, const Tensor* bias, const Tensor& y,
                const LinearOptions& options) {
  check_matmul(o, bias, y);
  if (o.m == 0) return;
  detail::apply_num_threads();
  const detail::Primitive& prim = matmul_primitive(o, bias, options);
  execute_matmul(prim, o, bias, y);
}

void run_matmul(const Tensor& x, const Tensor& w, tag w_tag, int64_t n, const Tensor* bias,
                const Tensor& y, const LinearOptions& options) {
  run_matmul({x.data(), dt::f32, w.data(), dt::f32, w_tag, x.rows(), x.dim(-1), n}, bias, y,
             options);
}

// x [m, k] rounded to bf16 (nearest even, oneDNN's reorder) into `out`, which holds m·k/2 floats'
// worth of bytes: an activation buffer of nn's, so it is reused and given back like the others.
void round_to_bf16(const Tensor& x, const Tensor& out) {
  const int64_t m = x.rows(), k = x.dim(-1);
  detail::apply_num_threads();
  dnnl::memory::desc src_md({m, k}, dt::f32, tag::ab), dst_md({m, k}, dt::bf16, tag::ab);
  detail::Primitive& prim = detail::cached_primitive(
      "reorder:bf16:" + std::to_string(m) + ":" + std::to_string(k), [&] {
        auto& engine = detail::cpu_engine();
        dnnl::reorder::primitive_desc pd(engine, src_md, engine, dst_md,
                                         detail::scratchpad_attr());
        return detail::Primitive{dnnl::reorder(pd), pd.scratchpad_desc()};
      });
  auto& engine = detail::cpu_engine();
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_FROM, dnnl::memory(src_md, engine, const_cast<float*>(x.data()))},
      {DNNL_ARG_TO, dnnl::memory(dst_md, engine, out.mutable_data())}};
  detail::execute(prim.prim, prim.scratchpad, args);
}

constexpr int64_t kSmallM = 16;  // decode-size products: x with at most this many rows (below)

// The epilogue of a decode-size product, on `cols` sums of one row while they are in cache:
// bias, GELU, then stored into dst or added to it (the residual).
void finish_row(float* sums, int64_t cols, const float* bias, const LinearOptions& options,
                float* dst) {
  if (bias) vmath::add(sums, bias, sums, cols);
  if (options.activation == Activation::kGelu) vmath::gelu(sums, cols);
  if (options.accumulate)
    vmath::add(dst, sums, dst, cols);
  else
    std::memcpy(dst, sums, cols * sizeof(float));
}

// Decode-step products (M = beams, a few rows) are bound by reading the weights once: 3 rows ×
// 2 flop per weight is no work for the FMA units. oneDNN is the rule for products in nn/, but not
// here (docs/decisions/compute-library.md, "Decode-size products"): for M = 3 every library path
// measured reads the weights more than once or stalls in its packing, 1.6-3.5x slower than the
// loop below on one Florence-2-base decode step (bench/florence/bf16_decode.cc), which streams
// every weight row exactly once for all rows of x (x, M × K floats, stays in L1/L2) and runs at
// ~1.1x the time of reading the weights. It is a matrix-vector product, not a GEMM: no blocking,
// no packing; the only tuning is how many weight rows share the loads of x and a prefetch.
constexpr int64_t kBlockN = 512;

__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 8 weights as floats: fp32 as stored, bf16 widened exactly (its 16 bits are the float's top half).
__attribute__((target("avx2,fma"))) inline __m256 load8(const float* p) {
  return _mm256_loadu_ps(p);
}
__attribute__((target("avx2,fma"))) inline __m256 load8(const uint16_t* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
inline float to_float(float v) { return v; }
inline float to_float(uint16_t v) { return std::bit_cast<float>(uint32_t{v} << 16); }

// out[r * ldo + j - j0] = x[r] · w[j] for R rows of x and weight rows j in [j0, j1), W weight rows
// per pass (R × W accumulators + R loads of x fit the 16 ymm registers). Rows of K not a multiple
// of 8 finish in scalar code.
template <int R, int W, typename T>
__attribute__((target("avx2,fma"))) void dot_rows(const float* x, int64_t k, const T* w,
                                                  int64_t j0, int64_t j1, float* out,
                                                  int64_t ldo) {
  const int64_t k8 = k & ~int64_t{7};
  int64_t j = j0;
  for (; j + W <= j1; j += W) {
    const T* wj = w + j * k;
    __m256 acc[W][R];
#pragma GCC unroll 4
    for (int v = 0; v < W; ++v)
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[v][r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < k8; i += 8) {
      __m256 xv[R];
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) xv[r] = _mm256_loadu_ps(x + r * k + i);
#pragma GCC unroll 4
      for (int v = 0; v < W; ++v) {
        // The next pass's rows, into L2 (T1): the hardware prefetcher alone leaves gaps between
        // W separate streams, and pulling them into L1 (T0) evicts the rows being read (4 rows
        // of fc2 are 48 KB, L1 is 32 KB): on Zen 4, T0 ran at 13 GB/s per thread, T1 at 24-27
        // GB/s against a 28-30 GB/s read, and one decode step's products went 16.8 -> 9.0 ms on
        // 2 threads (bench/florence/bf16_decode.cc).
        _mm_prefetch(reinterpret_cast<const char*>(wj + (v + W) * k + i), _MM_HINT_T1);
        const __m256 wv = load8(wj + v * k + i);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) acc[v][r] = _mm256_fmadd_ps(xv[r], wv, acc[v][r]);
      }
    }
#pragma GCC unroll 4
    for (int v = 0; v < W; ++v)
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        float s = hsum(acc[v][r]);
        for (int64_t i = k8; i < k; ++i) s += x[r * k + i] * to_float(wj[v * k + i]);
        out[r * ldo + j + v - j0] = s;
      }
  }
  if (j < j1) dot_rows<R, 1, T>(x, k, w, j, j1, out + (j - j0), ldo);
}

// All m rows of x against weight rows [j0, j1), in groups of up to 4 rows; for m > 4 the block's
// weight rows are read again from L2, not from memory.
template <typename T>
void dot_block(const float* x, int64_t m, int64_t k, const T* w, int64_t j0, int64_t j1,
               float* out, int64_t ldo) {
  for (int64_t r = 0; r < m; r += 4) {
    const float* xr = x + r * k;
    float* o = out + r * ldo;
    switch (std::min<int64_t>(4, m - r)) {
      case 1: dot_rows<1, 4, T>(xr, k, w, j0, j1, o, ldo); break;
      case 2: dot_rows<2, 4, T>(xr, k, w, j0, j1, o, ldo); break;
      case 3: dot_rows<3, 4, T>(xr, k, w, j0, j1, o, ldo); break;
      default: dot_rows<4, 2, T>(xr, k, w, j0, j1, o, ldo); break;
    }
  }
}

bool have_avx2_fma() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

// Scalar stand-in for CPUs without AVX2/FMA, for bf16 weights (fp32 ones go to oneDNN there).
void dot_block_scalar(const float* x, int64_t m, int64_t k, const uint16_t* w, int64_t j0,
                      int64_t j1, float* out, int64_t ldo) {
  for (int64_t r = 0; r < m; ++r)
    for (int64_t j = j0; j < j1; ++j) {
      float s = 0;
      for (int64_t i = 0; i < k; ++i) s += x[r * k + i] * to_float(w[j * k + i]);
      out[r * ldo + j - j0] = s;
    }
}

// y = act(x · wᵀ + bias) (+ y) for x [m, k] with m <= kSmallM, weights [n, k] of type T.
template <typename T>
void small_m_linear(const Tensor& x, const T* wp, int64_t n, const Tensor* bias, const Tensor& y,
                    const LinearOptions& options) {
  const int64_t k = x.dim(-1), m = x.rows();
  const float* xp = x.data();
  const float* bp = bias ? bias->data() : nullptr;
  float* yp = y.mutable_data();
  const bool avx2 = have_avx2_fma();
  detail::apply_num_threads();
  std::atomic<bool> failed{false};
  // One contiguous range of outputs per thread (one stream through memory each); at least 64
  // outputs (192 KB of a 768-input weight) per thread, so tiny products pay no barrier.
  parallel_for(n, 64, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> block;
    block.resize(m * kBlockN);
    for (int64_t n0 = begin; n0 < end; n0 += kBlockN) {
      const int64_t nb = std::min(kBlockN, end - n0);
      if (avx2) {
        dot_block(xp, m, k, wp, n0, n0 + nb, block.data(), nb);
      } else if constexpr (std::is_same_v<T, float>) {  // no AVX2/FMA: oneDNN on the block
        dnnl_status_t st =
            dnnl_sgemm('N', 'T', m, nb, k, 1.0f, xp, k, wp + n0 * k, k, 0.0f, block.data(), nb);
        if (st != dnnl_success) failed = true;  // no throwing out of an OpenMP region
      } else {
        dot_block_scalar(xp, m, k, wp, n0, n0 + nb, block.data(), nb);
      }
      for (int64_t r = 0; r < m; ++r)
        finish_row(block.data() + r * nb, nb, bp ? bp + n0 : nullptr, options, yp + r * n + n0);
    }
  });
  if (failed) throw ShapeError("linear: dnnl_sgemm failed for a decode-size product");
}

// Shapes of x, bias and y for weights [n, k] (`kind`: "fp32" or "bf16"); for the products that
// do not go through run_matmul's own checks first (decode sizes, bf16 weights).
void check_shapes(const Tensor& x, int64_t n, int64_t k, const Tensor* bias, const Tensor& y,
                  const char* kind) {
  const auto weight = [&] {
    return std::string(kind) + " [" + std::to_string(n) + ", " + std::to_string(k) + "]";
  };
  if (x.rank() == 0 || x.dim(-1) != k)
    throw ShapeError("linear: x " + x.shape().to_string() + " with weight " + weight() +
                     " ([out, in])");
  if (y.rows() != x.rows() || y.dim(-1) != n || (bias && bias->numel() != n))
    throw ShapeError("linear: output " + y.shape().to_string() + " / bias for weight " +
                     weight());
}

}  // namespace

void linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
            const LinearOptions& options) {
  if (w.rank() != 2 || x.rank() == 0 || x.dim(-1) != w.dim(1))
    throw ShapeError("linear: x " + x.shape().to_string() + " with weight " +
                     w.shape().to_string() + " ([out, in])");
  if (x.rows() <= kSmallM) {
    check_shapes(x, w.dim(0), w.dim(1), bias, y, "fp32");
    small_m_linear(x, w.data(), w.dim(0), bias, y, options);
    return;
  }
  run_matmul(x, w, tag::ba, w.dim(0), bias, y, options);
}

void small_m_product(const float* x, int64_t m, int64_t k, const float* w, int64_t n, float* y,
                     int64_t ldy) {
  if (m < 1 || m > kSmallM || k < 1 || n < 0 || ldy < n)
    throw ShapeError("small_m_product: x " + std::to_string(m) + " x " + std::to_string(k) +
                     ", " + std::to_string(n) + " weight rows, ldy " + std::to_string(ldy));
  if (have_avx2_fma()) {
    dot_block(x, m, k, w, 0, n, y, ldy);
    return;
  }
  const dnnl_status_t st = dnnl_sgemm('N', 'T', m, n, k, 1.0f, x, k, w, k, 0.0f, y, ldy);
  if (st != dnnl_success) throw ShapeError("dnnl_sgemm failed, status " + std::to_string(st));
}

Bf16Weights Bf16Weights::from(const Tensor& w) {
  if (w.rank() != 2) throw ShapeError("Bf16Weights: weight " + w.shape().to_string());
  auto storage = std::make_shared<std::vector<uint16_t>>(static_cast<size_t>(w.numel()));
  const float* src = w.data();
  uint16_t* dst = storage->data();
  for (size_t i = 0; i < storage->size(); ++i) {
    const uint32_t u = std::bit_cast<uint32_t>(src[i]);
    // Round to nearest even, as torch's .to(torch.bfloat16); NaN stays NaN.
    dst[i] = std::isnan(src[i]) ? uint16_t(0x7fc0)
                                : static_cast<uint16_t>((u + 0x7fff + ((u >> 16) & 1)) >> 16);
  }
  Bf16Weights out;
  out.data_ = storage->data();
  out.storage_ = std::move(storage);
  out.rows_ = w.dim(0);
  out.cols_ = w.dim(1);
  return out;
}

Bf16Weights Bf16Weights::rows_view(int64_t begin, int64_t end) const {
  if (begin < 0 || end < begin || end > rows_)
    throw ShapeError("Bf16Weights: rows [" + std::to_string(begin) + ", " + std::to_string(end) +
                     ") of " + std::to_string(rows_));
  Bf16Weights out = *this;
  out.data_ = data_ + begin * cols_;
  out.rows_ = end - begin;
  return out;
}

namespace {

// GCC 12 warns inside its own AVX-512 headers (their _mm512_undefined_* placeholders, a known
// false positive): off for the packed kernel only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// out[r][c] = x[r] · w[64b + c] for R rows of x and one block b of packed weights ([K][64]):
// R × 4 accumulators, x[r][i] broadcast, the block's K × 256 bytes read once in order.
template <int R>
__attribute__((target("avx512f"))) void packed_block_avx512(const float* x, int64_t k,
                                                            const float* block, float* out) {
  __m512 acc[R][4];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) acc[r][u] = _mm512_setzero_ps();
  for (int64_t i = 0; i < k; ++i) {
    const float* wi = block + i * 64;
    const __m512 w0 = _mm512_loadu_ps(wi), w1 = _mm512_loadu_ps(wi + 16),
                 w2 = _mm512_loadu_ps(wi + 32), w3 = _mm512_loadu_ps(wi + 48);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512 xb = _mm512_set1_ps(x[r * k + i]);
      acc[r][0] = _mm512_fmadd_ps(xb, w0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(xb, w1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(xb, w2, acc[r][2]);
      acc[r][3] = _mm512_fmadd_ps(xb, w3, acc[r][3]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) _mm512_storeu_ps(out + r * 64 + 16 * u, acc[r][u]);
}

#pragma GCC diagnostic pop

// The same for blocks of 32 outputs ([K][32]) in ymm registers: R <= 3 rows × 4 accumulators, R
// broadcasts and one weight vector at a time fill the 16 registers. The lines 768 bytes ahead
// (6 rows of the block; past its end, the next block's) are prefetched: on Zen 3 one decode
// step's products took 1.10-1.19x a plain read so, 1.13-1.26x without, alternating in one process
// (bench/florence/decode_kernels.cc; 384 floats ahead or more, or into L2, gained less).
template <int R>
__attribute__((target("avx2,fma"))) void packed_block_avx2(const float* x, int64_t k,
                                                           const float* block, float* out) {
  constexpr int64_t kAhead = 192;  // floats
  __m256 acc[R][4];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) acc[r][u] = _mm256_setzero_ps();
  for (int64_t i = 0; i < k; ++i) {
    const float* wi = block + i * 32;
    _mm_prefetch(reinterpret_cast<const char*>(wi + kAhead), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(wi + kAhead + 16), _MM_HINT_T0);
    __m256 xb[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) xb[r] = _mm256_broadcast_ss(x + r * k + i);
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) {
      const __m256 wv = _mm256_loadu_ps(wi + 8 * u);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[r][u] = _mm256_fmadd_ps(xb[r], wv, acc[r][u]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) _mm256_storeu_ps(out + r * 32 + 8 * u, acc[r][u]);
}

std::atomic<bool> row_major_forced{false};  // detail::force_row_major_decode (tests)
std::atomic<bool> avx2_forced{false};       // detail::force_avx2_packing (tests)

}  // namespace

void detail::force_row_major_decode(bool on) { row_major_forced.store(on); }
void detail::force_avx2_packing(bool on) { avx2_forced.store(on); }

int64_t PackedWeights::native_block() {
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  if (row_major_forced.load(std::memory_order_relaxed)) return 0;
  if (avx512 && !avx2_forced.load(std::memory_order_relaxed)) return 64;
  return have_avx2_fma() ? 32 : 0;
}

bool PackedWeights::supported() { return native_block() > 0; }

std::vector<PackedWeights> PackedWeights::from_all(std::span<const Tensor> weights) {
  std::vector<Size> shapes;
  for (const Tensor& w : weights) {
    if (w.rank() != 2) throw ShapeError("PackedWeights: weight " + w.shape().to_string());
    shapes.push_back({w.dim(0), w.dim(1)});
  }
  return from_rows(shapes, [&](size_t i, int64_t r0, int64_t r1, float* out) {
    const int64_t k = weights[i].dim(1);
    std::memcpy(out, weights[i].data() + r0 * k, (r1 - r0) * k * sizeof(float));
  });
}

std::vector<PackedWeights> PackedWeights::from_rows(std::span<const Size> shapes,
                                                    const RowReader& read) {
  const int64_t nb = native_block();
  if (nb == 0) throw ShapeError("PackedWeights: this CPU has neither AVX-512 nor AVX2 with FMA");
  if (shapes.empty()) return {};
  std::vector<int64_t> offsets;  // in floats; every part starts on a 64-byte line
  int64_t total = 0;
  for (const Size& shape : shapes) {
    if (shape.rows < 1 || shape.cols < 1)
      throw ShapeError("PackedWeights: weight [" + std::to_string(shape.rows) + ", " +
                       std::to_string(shape.cols) + "]");
    offsets.push_back(total);
    total += (shape.rows + nb - 1) / nb * nb * shape.cols;
  }
  // One mapping for all: a huge page each would round every one up to 2 MiB of resident memory.
  const Tensor all = Tensor::empty_on_huge_pages({total});  // zero-filled: the padding
  std::vector<PackedWeights> out;
  detail::apply_num_threads();
  for (size_t i = 0; i < shapes.size(); ++i) {
    const int64_t n = shapes[i].rows, k = shapes[i].cols, blocks = (n + nb - 1) / nb;
    PackedWeights p;
    p.packed_ = all.slice0(offsets[i], offsets[i] + blocks * k * nb).reshape({blocks * k, nb});
    p.rows_ = n;
    p.cols_ = k;
    p.block_ = nb;
    float* packed = p.packed_.mutable_data();
    std::atomic<bool> failed{false};
    parallel_for(blocks, 1, [&](int64_t begin, int64_t end) {
      thread_local std::vector<float> rows;
      rows.resize(nb * k);
      for (int64_t b = begin; b < end && !failed; ++b) {  // one block of rows at a time
        const int64_t r0 = b * nb, r1 = std::min(n, r0 + nb), count = r1 - r0;
        try {
          read(i, r0, r1, rows.data());
        } catch (...) {
          failed = true;  // no throwing out of an OpenMP region
          return;
        }
        // A transpose of the block: its lines written in order, the rows read from L2.
        float* dst = packed + b * k * nb;
        for (int64_t c = 0; c < k; ++c)
          for (int64_t r = 0; r < count; ++r) dst[c * nb + r] = rows[r * k + c];
      }
    });
    if (failed)
      throw ShapeError("PackedWeights: reading the rows of weight " + std::to_string(i) + " failed");
    out.push_back(std::move(p));
  }
  return out;
}

PackedWeights PackedWeights::from(const Tensor& w) { return from_all({&w, 1}).front(); }

namespace {

// The products of blocks [b0, b1) of w with all m rows of x, in groups of up to 4 rows (3 on
// AVX2; for more, each block, K × block × 4 bytes, is read again from L2); store(r, j0, cols,
// sums) takes row r's sums for outputs [j0, j0 + cols) while they are in cache.
template <typename Store>
void packed_blocks(const float* x, int64_t m, const PackedWeights& w, int64_t b0, int64_t b1,
                   const Store& store) {
  const int64_t k = w.cols(), n = w.rows(), nb = w.block();
  const bool wide = nb == 64;
  const int64_t group = wide ? 4 : 3;
  thread_local std::vector<float> out;
  out.resize(group * nb);
  for (int64_t b = b0; b < b1; ++b) {
    const float* block = w.data() + b * k * nb;
    const int64_t j0 = b * nb, cols = std::min(nb, n - j0);
    for (int64_t r0 = 0; r0 < m; r0 += group) {
      const int64_t rows = std::min(group, m - r0);
      const float* xr = x + r0 * k;
      if (wide) {
        switch (rows) {
          case 1: packed_block_avx512<1>(xr, k, block, out.data()); break;
          case 2: packed_block_avx512<2>(xr, k, block, out.data()); break;
          case 3: packed_block_avx512<3>(xr, k, block, out.data()); break;
          default: packed_block_avx512<4>(xr, k, block, out.data()); break;
        }
      } else {
        switch (rows) {
          case 1: packed_block_avx2<1>(xr, k, block, out.data()); break;
          case 2: packed_block_avx2<2>(xr, k, block, out.data()); break;
          default: packed_block_avx2<3>(xr, k, block, out.data()); break;
        }
      }
      for (int64_t r = 0; r < rows; ++r) store(r0 + r, j0, cols, out.data() + r * nb);
    }
  }
}

}  // namespace

void linear(const Tensor& x, const PackedWeights& w, const Tensor* bias, const Tensor& y,
            const LinearOptions& options) {
  const PackedOutput one[] = {{&w, bias, y}};
  linear(x, one, options);
}

void linear(const Tensor& x, std::span<const PackedOutput> outputs, const LinearOptions& options) {
  std::vector<int64_t> first_block{0};  // outputs[i]'s blocks are [first_block[i], [i + 1])
  for (const PackedOutput& o : outputs) {
    check_shapes(x, o.weights->rows(), o.weights->cols(), o.bias, o.y, "packed");
    const int64_t nb = o.weights->block();
    first_block.push_back(first_block.back() + (o.weights->rows() + nb - 1) / nb);
  }
  detail::apply_num_threads();
  // Whole blocks (96-192 KB of a 768-input weight each): each thread streams through its share
  // of all the outputs' blocks, and helps the other at the end.
  parallel_for_stealing(first_block.back(), [&](int64_t begin, int64_t end) {
    for (size_t i = 0; i < outputs.size(); ++i) {
      const int64_t b0 = std::max(begin, first_block[i]), b1 = std::min(end, first_block[i + 1]);
      if (b0 >= b1) continue;
      const PackedOutput& o = outputs[i];
      const int64_t n = o.weights->rows();
      const float* bp = o.bias ? o.bias->data() : nullptr;
      float* yp = o.y.mutable_data();
      packed_blocks(x.data(), x.rows(), *o.weights, b0 - first_block[i], b1 - first_block[i],
                    [&](int64_t r, int64_t j0, int64_t cols, float* sums) {
                      finish_row(sums, cols, bp ? bp + j0 : nullptr, options, yp + r * n + j0);
                    });
    }
  });
}

void packed_product(const float* x, int64_t m, const PackedWeights& w, float* y, int64_t ldy) {
  if (m < 1 || w.empty() || ldy < w.rows())
    throw ShapeError("packed_product: " + std::to_string(m) + " rows of x, " +
                     std::to_string(w.rows()) + " outputs, ldy " + std::to_string(ldy));
  packed_blocks(x, m, w, 0, (w.rows() + w.block() - 1) / w.block(),
                [&](int64_t r, int64_t j0, int64_t cols, const float* sums) {
                  std::memcpy(y + r * ldy + j0, sums, cols * sizeof(float));
                });
}

struct GemmWeights::Layout {
  dnnl::memory::desc desc;
  dnnl::memory bytes;  // owns the reordered weights
};

GemmWeights GemmWeights::from(const Tensor& w, int64_t m_hint) {
  if (w.rank() != 2 || m_hint < 1)
    throw ShapeError("GemmWeights: weight " + w.shape().to_string() + " for " +
                     std::to_string(m_hint) + " rows");
  // On AVX2 (Zen 3) oneDNN's fp32 matmul measured no faster with reordered weights (bench/gemm,
  // sessions 1-4): no copy there. `isa` is what oneDNN runs, so DNNL_MAX_CPU_ISA counts too.
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto avx512 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core);
  if ((isa & avx512) != avx512) return {};
  const int64_t n = w.dim(0), k = w.dim(1);
  detail::apply_num_threads();
  const dnnl::memory::desc stored({k, n}, dt::f32, tag::ba);
  const dnnl::memory::desc wanted =
      matmul_pd({nullptr, dt::f32, nullptr, dt::f32, tag::any, m_hint, k, n}, nullptr, {})
          .weights_desc();
  if (wanted == stored) return {};
  auto& engine = detail::cpu_engine();
  auto layout = std::make_shared<Layout>(Layout{wanted, dnnl::memory(wanted, engine)});
  dnnl::memory from(stored, engine, const_cast<float*>(w.data()));
  dnnl::reorder(from, layout->bytes).execute(detail::thread_stream(), from, layout->bytes);
  detail::thread_stream().wait();
  GemmWeights out;
  out.layout_ = std::move(layout);
  out.rows_ = n;
  out.cols_ = k;
  return out;
}

void linear(const Tensor& x, const Tensor& w, const GemmWeights& wg, const Tensor* bias,
            const Tensor& y, const LinearOptions& options) {
  if (!wg.empty() && x.rank() > 0 && x.rows() > kSmallM) {
    if (wg.rows() != w.dim(0) || wg.cols() != w.dim(1) || x.dim(-1) != wg.cols())
      throw ShapeError("linear: x " + x.shape().to_string() + " with reordered weight " +
                       std::to_string(wg.rows()) + " x " + std::to_string(wg.cols()));
    const void* bytes = wg.layout().bytes.get_data_handle();
    const Operands o{x.data(), dt::f32, bytes, dt::f32, tag::any, x.rows(), x.dim(-1), wg.rows()};
    check_matmul(o, bias, y);
    detail::apply_num_threads();
    const detail::Primitive& prim = matmul_primitive(o, bias, options);
    // oneDNN may block the weights differently for another number of rows: then the stored ones.
    if (prim.weights == wg.layout().desc) {
      execute_matmul(prim, o, bias, y);
      return;
    }
  }
  linear(x, w, bias, y, options);
}

bool bf16_gemm_supported() {
  // oneDNN knows the ISA: it builds a bf16 matmul only where one runs (2.6 refuses on AVX2).
  static const bool ok = [] {
    try {
      dnnl::memory::desc a({32, 32}, dt::bf16, tag::ab), b({32, 32}, dt::bf16, tag::ba),
          c({32, 32}, dt::f32, tag::ab);
      dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, c), detail::cpu_engine());
      return true;
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return ok;
}

void linear(const Tensor& x, const Bf16Weights& w, const Tensor* bias, const Tensor& y,
            const LinearOptions& options) {
  check_shapes(x, w.rows(), w.cols(), bias, y, "bf16");
  if (x.rows() <= kSmallM) {
    small_m_linear(x, w.data(), w.rows(), bias, y, options);
    return;
  }
  if (!bf16_gemm_supported())
    throw ShapeError("linear: bf16 weights with " + std::to_string(x.rows()) +
                     " rows need a CPU with bf16 arithmetic (AVX512_BF16 or AMX)");
  const int64_t m = x.rows(), k = x.dim(-1);
  const Tensor x16 = Tensor::empty({(m * k + 1) / 2});  // m·k bf16 values
  round_to_bf16(x, x16);
  run_matmul({x16.data(), dt::bf16, w.data(), dt::bf16, tag::ba, m, k, w.rows()}, bias, y,
             options);
}

void linear(const Tensor& x, const Tensor& w, const Bf16Weights& w16, const Tensor* bias,
            const Tensor& y, const LinearOptions& options) {
  if (w16.empty())
    linear(x, w, bias, y, options);
  else
    linear(x, w16, bias, y, options);
}

void linear(const Tensor& x, const Tensor& w, const Bf16Weights& w16, const PackedWeights& wp,
            const Tensor* bias, const Tensor& y, const LinearOptions& options) {
  if (w16.empty() && !wp.empty())
    linear(x, wp, bias, y, options);
  else
    linear(x, w, w16, bias, y, options);
}

void linear(const Tensor& x, const Tensor& w, const Bf16Weights& w16, const GemmWeights& wg,
            const Tensor* bias, const Tensor& y, const LinearOptions& options) {
  if (w16.empty())
    linear(x, w, wg, bias, y, options);
  else
    linear(x, w16, bias, y, options);
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias, const LinearOptions& options) {
  if (w.rank() != 2 || x.rank() == 0)
    throw ShapeError("linear: x " + x.shape().to_string() + " weight " + w.shape().to_string());
  if (options.accumulate) throw ShapeError("linear: accumulate needs an output tensor");
  Tensor y = Tensor::empty(x.shape().with_dim(-1, w.dim(0)));
  linear(x, w, bias, y, options);
  return y;
}

void matmul(const Tensor& x, const Tensor& w_kn, const Tensor& y) {
  if (w_kn.rank() != 2 || x.rank() == 0 || x.dim(-1) != w_kn.dim(0))
    throw ShapeError("matmul: x " + x.shape().to_string() + " with weight " +
                     w_kn.shape().to_string() + " ([in, out])");
  run_matmul(x, w_kn, tag::ab, w_kn.dim(1), nullptr, y, {});
}

}  // namespace celeriac::nn
