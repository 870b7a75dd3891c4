// LayerNorm: rows in parallel, each row by vmath::layer_norm.
#include "nn/norm.h"

#include <algorithm>

#include "nn/threading.h"
#include "nn/vmath.h"

namespace celeriac::nn {

void layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps,
                const Tensor& y) {
  const int64_t c = x.dim(-1), rows = x.rows();
  if (gamma.numel() != c || beta.numel() != c || y.numel() != x.numel())
    throw ShapeError("layer_norm: x " + x.shape().to_string() + " gamma " +
                     gamma.shape().to_string() + " beta " + beta.shape().to_string() + " y " +
                     y.shape().to_string());
  const float* in = x.data();
  float* out = y.mutable_data();
  const float *g = gamma.data(), *b = beta.data();
  parallel_for(rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(c, 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t r = begin; r < end; ++r)
                   vmath::layer_norm(in + r * c, out + r * c, c, g, b, eps);
               });
}

}  // namespace celeriac::nn
