// Linear and matmul on oneDNN. The weight operand is described to oneDNN as the K × N matrix it
// is in memory (format "ba" for [N, K] storage): bench/gemm measured no gain from letting oneDNN
// repack fp32 weights on this AVX2 machine, and using the mapped bytes in place keeps the
// one-copy rule.
#include "nn/linear.h"

#include <unordered_map>

#include "nn/dnnl_backend.h"
#include "nn/threading.h"

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

}  // namespace

void linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
            const LinearOptions& options) {
  if (w.rank() != 2 || x.rank() == 0 || x.dim(-1) != w.dim(1))
    throw ShapeError("linear: x " + x.shape().to_string() + " with weight " +
                     w.shape().to_string() + " ([out, in])");
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
