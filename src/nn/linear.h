// Dense products on oneDNN's matmul primitive (fp32): PyTorch's Linear with weights stored
// [out, in] as in the checkpoints (used in place from the mapped file, never transposed or
// copied), and the plain x·W of Florence-2's image_projection ([in, out], spec §5).
#pragma once

#include <cstdint>
#include <vector>

#include "nn/tensor.h"

namespace celeriac::nn {

enum class Activation {
  kNone,
  kGelu,  // exact erf form, torch.nn.GELU() / BART's "gelu" (oneDNN eltwise_gelu_erf)
};

struct LinearOptions {
  Activation activation = Activation::kNone;  // applied to x·Wᵀ + b
  bool accumulate = false;                    // y += result (a residual add), else y = result
};

// y[..., N] = act(x[..., K] · w[N, K]ᵀ + bias[N]) (+ y if accumulate). bias may be null. x and y
// are read as M × K and M × N matrices (M = product of the leading dimensions); y must not alias x.
void linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
            const LinearOptions& options = {});
// Allocating form.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias,
              const LinearOptions& options = {});

// Weights [N, K] kept as bfloat16 (the top half of each float32, rounded to nearest even as
// torch's .to(torch.bfloat16)): half the bytes a decode step reads. This CPU has no bf16
// arithmetic, so the products widen them to fp32 in registers (exactly) and accumulate in fp32;
// only decode-size products (x with <= 16 rows) take them.
class Bf16Weights {
 public:
  Bf16Weights() = default;
  static Bf16Weights from(const Tensor& w);  // a converted copy of fp32 weights [N, K]
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  bool empty() const { return data_.empty(); }
  const uint16_t* data() const { return data_.data(); }

 private:
  std::vector<uint16_t> data_;
  int64_t rows_ = 0, cols_ = 0;
};

// As linear() above with bf16 weights; x must have at most 16 rows (ShapeError otherwise).
void linear(const Tensor& x, const Bf16Weights& w, const Tensor* bias, const Tensor& y,
            const LinearOptions& options = {});

// y[r, j] = x[r] · w[j] for x [m, k] with m <= 16 rows and weights w [n, k], both contiguous,
// on the calling thread (no bias, no threads of its own): the decode-size kernel of linear() for
// callers that split the work across threads themselves (nn::FixedKv). y rows are ldy apart.
void small_m_product(const float* x, int64_t m, int64_t k, const float* w, int64_t n, float* y,
                     int64_t ldy);

// y[M, N] = x[M, K] · w[K, N] (weights stored [in, out]).
void matmul(const Tensor& x, const Tensor& w_kn, const Tensor& y);

}  // namespace celeriac::nn
