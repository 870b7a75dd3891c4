// Dense products on oneDNN's matmul primitive (fp32): PyTorch's Linear with weights stored
// [out, in] as in the checkpoints (used in place from the mapped file, never transposed or
// copied), and the plain x·W of Florence-2's image_projection ([in, out], spec §5).
#pragma once

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

// y[M, N] = x[M, K] · w[K, N] (weights stored [in, out]).
void matmul(const Tensor& x, const Tensor& w_kn, const Tensor& y);

}  // namespace celeriac::nn
