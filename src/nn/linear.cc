// Linear and matmul on oneDNN. The weight operand is described to oneDNN as the K × N matrix it
// is in memory (format "ba" for [N, K] storage): bench/gemm measured no gain from letting oneDNN
// repack fp32 weights on this AVX2 machine, and using the mapped bytes in place keeps the
// one-copy rule.
#include "nn/linear.h"

#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "nn/dnnl_backend.h"
#include "nn/threading.h"
#include "nn/vmath.h"

namespace celeriac::nn {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// One product: src M×K (row-major), weights K×N in `w_tag` layout, dst M×N.
void run_matmul(const Tensor& x, const Tensor& w, tag w_tag, int64_t n, const Tensor* bias,
                const Tensor& y, const LinearOptions& options) {
  const int64_t k = x.dim(-1), m = x.rows();
  if (y.rows() != m || y.dim(-1) != n)
    throw ShapeError("linear: output " + y.shape().to_string() + " for " + std::to_string(m) +
                     " x " + std::to_string(n));
  if (bias && bias->numel() != n)
    throw ShapeError("linear: bias " + bias->shape().to_string() + " for N = " + std::to_string(n));
  if (m == 0) return;
  detail::apply_num_threads();

  std::string key = "matmul:" + std::to_string(m) + ":" + std::to_string(k) + ":" +
                    std::to_string(n) + ":" + std::to_string(static_cast<int>(w_tag)) + ":" +
                    (bias ? "b" : "-") + std::to_string(static_cast<int>(options.activation)) +
                    (options.accumulate ? "+" : "=");
  dnnl::memory::desc src_md({m, k}, dt::f32, tag::ab);
  dnnl::memory::desc w_md({k, n}, dt::f32, w_tag);
  dnnl::memory::desc bias_md({1, n}, dt::f32, tag::ab);
  dnnl::memory::desc dst_md({m, n}, dt::f32, tag::ab);
  dnnl::primitive& prim = detail::cached_primitive(key, [&] {
    dnnl::post_ops ops;
    // Order of the reference: bias inside the product, then the activation, then the residual.
    if (options.activation == Activation::kGelu)
      ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_erf, 0.0f, 0.0f);
    if (options.accumulate) ops.append_sum(1.0f);
    dnnl::primitive_attr attr;
    attr.set_post_ops(ops);
    auto desc = bias ? dnnl::matmul::desc(src_md, w_md, bias_md, dst_md)
                     : dnnl::matmul::desc(src_md, w_md, dst_md);
    return dnnl::matmul(dnnl::matmul::primitive_desc(desc, attr, detail::cpu_engine()));
  });

  auto& engine = detail::cpu_engine();
  dnnl::memory src(src_md, engine, const_cast<float*>(x.data()));
  dnnl::memory wts(w_md, engine, const_cast<float*>(w.data()));
  dnnl::memory dst(dst_md, engine, y.mutable_data());
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wts}, {DNNL_ARG_DST, dst}};
  if (bias)
    args.emplace(DNNL_ARG_BIAS, dnnl::memory(bias_md, engine, const_cast<float*>(bias->data())));
  prim.execute(detail::thread_stream(), args);
  detail::thread_stream().wait();
}

// Decode-step products (M = beams, a few rows) are bound by reading the weights once. One oneDNN
// call over the whole [N, K] weight packs it into a buffer as large as itself, so the weights
// cross the memory bus three times (lm_head 3 × 768 × 51289: 33 ms, 4.7 GB/s); calls over column
// blocks of 512 outputs keep the packed block in L2 (20 ms, 7.8 GB/s, the machine's stream read
// being ~11-13 GB/s), and the blocks spread over the threads. The epilogue (bias, GELU, residual)
// runs on the block while it is in cache.
constexpr int64_t kSmallM = 16;
constexpr int64_t kBlockN = 512;

void small_m_linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                    const LinearOptions& options) {
  const int64_t k = x.dim(-1), m = x.rows(), n = w.dim(0);
  const float* xp = x.data();
  const float* wp = w.data();
  const float* bp = bias ? bias->data() : nullptr;
  float* yp = y.mutable_data();
  detail::apply_num_threads();
  std::atomic<bool> failed{false};
  parallel_for((n + kBlockN - 1) / kBlockN, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> block;
    block.resize(m * kBlockN);
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t n0 = blk * kBlockN, nb = std::min(kBlockN, n - n0);
      dnnl_status_t st =
          dnnl_sgemm('N', 'T', m, nb, k, 1.0f, xp, k, wp + n0 * k, k, 0.0f, block.data(), nb);
      if (st != dnnl_success) failed = true;  // no throwing out of an OpenMP region
      for (int64_t r = 0; r < m; ++r) {
        float* row = block.data() + r * nb;
        if (bp) vmath::add(row, bp + n0, row, nb);
        if (options.activation == Activation::kGelu) vmath::gelu(row, nb);
        float* out = yp + r * n + n0;
        if (options.accumulate)
          vmath::add(out, row, out, nb);
        else
          std::memcpy(out, row, nb * sizeof(float));
      }
    }
  });
  if (failed) throw ShapeError("linear: dnnl_sgemm failed for a decode-size product");
}

}  // namespace

void linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
            const LinearOptions& options) {
  if (w.rank() != 2 || x.rank() == 0 || x.dim(-1) != w.dim(1))
    throw ShapeError("linear: x " + x.shape().to_string() + " with weight " +
                     w.shape().to_string() + " ([out, in])");
  if (x.rows() <= kSmallM) {
    if (y.rows() != x.rows() || y.dim(-1) != w.dim(0) || (bias && bias->numel() != w.dim(0)))
      throw ShapeError("linear: output " + y.shape().to_string() + " / bias for weight " +
                       w.shape().to_string());
    small_m_linear(x, w, bias, y, options);
    return;
  }
  run_matmul(x, w, tag::ba, w.dim(0), bias, y, options);
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
