// LayerNorm over the last dimension (affine; biased variance; eps from the config, 1e-5 in
// Florence-2 for DaViT, the projection and BART).
#pragma once

#include "nn/tensor.h"

namespace celeriac::nn {

// y[..., C] = (x - mean) / sqrt(var + eps) * gamma[C] + beta[C]; y may be x (in place).
void layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps,
                const Tensor& y);

}  // namespace celeriac::nn
