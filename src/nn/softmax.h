// Softmax family over the last dimension, and top-k selection for beam search.
#pragma once

#include <cstdint>
#include <span>

#include "nn/tensor.h"

namespace celeriac::nn {

// In place over each row of x[..., C]: exp(x - max) / sum. Entries equal to -inf (masked) become
// 0; a row that is entirely -inf becomes all 0 (PyTorch would give NaN; no caller relies on that).
void softmax_rows(const Tensor& x);
// In place: (x - max) - log(sum(exp(x - max))), PyTorch's order of operations.
void log_softmax_rows(const Tensor& x);

// The k largest values of x[0, n) in descending order, ties broken by the lower index first (the
// order beam search needs to be reproducible). Writes k values and indices; k <= n.
void topk(const float* x, int64_t n, int64_t k, std::span<float> values,
          std::span<int64_t> indices);

}  // namespace celeriac::nn
