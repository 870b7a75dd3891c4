// Softmax family over the last dimension, and top-k selection for beam search.
#pragma once

#include <cstdint>
#include <limits>
#include <span>

#include "nn/tensor.h"

namespace celeriac::nn {

// In place over each row of x[..., C]: exp(x - max) / sum. Entries equal to -inf (masked) become
// 0; a row that is entirely -inf becomes all 0 (PyTorch would give NaN; no caller relies on that).
void softmax_rows(const Tensor& x);
// In place: (x - max) - log(sum(exp(x - max))), PyTorch's order of operations.
void log_softmax_rows(const Tensor& x);

// A piece of a row's log-softmax: its max and Σ exp(x - max), in double. A row's pieces combine
// into the row's max and log Σ exp(x - max), so one row can be reduced by several threads (the
// beam search's half rows). Accurate to double precision, far below the float rounding of the
// log-probabilities they feed.
struct SoftmaxPiece {
  float max = -std::numeric_limits<float>::infinity();
  double sum = 0.0;  // Σ exp(x - max); 0 for a piece of -inf only
};
SoftmaxPiece softmax_piece(const float* x, int64_t n);

struct SoftmaxTotal {
  float max = -std::numeric_limits<float>::infinity();
  double log_sum = -std::numeric_limits<double>::infinity();  // log Σ exp(x - max)
};
SoftmaxTotal softmax_total(std::span<const SoftmaxPiece> pieces);

// The k largest values of x[0, n) in descending order, ties broken by the lower index first (the
// order beam search needs to be reproducible). Writes k values and indices; k <= n.
void topk(const float* x, int64_t n, int64_t k, std::span<float> values,
          std::span<int64_t> indices);

}  // namespace celeriac::nn
