// Softmax, log-softmax and top-k. The row loops are vmath's; rows are spread over the intra-op
// threads (the decoder's 3 × 51289 log-softmax and DaViT's attention scores are the large users).
#include "nn/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "nn/threading.h"
#include "nn/vmath.h"

namespace celeriac::nn {
namespace {

// vmath::max is built with finite-math, where an OpenMP max-reduction starts from the lowest
// finite float instead of -inf: a row of -inf comes back as that value.
bool all_masked(float row_max) { return row_max <= std::numeric_limits<float>::lowest(); }

template <class RowFn>
void for_each_row(const Tensor& x, RowFn row_fn) {
  const int64_t cols = x.dim(-1), rows = x.rows();
  float* data = x.mutable_data();
  // A chunk of ~16k elements is worth a thread hand-off.
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t r = begin; r < end; ++r) row_fn(data + r * cols, cols);
               });
}

}  // namespace

void softmax_rows(const Tensor& x) {
  if (x.rank() == 0) return;
  for_each_row(x, [](float* row, int64_t n) {
    float m = vmath::max(row, n);
    if (all_masked(m)) {
      std::fill(row, row + n, 0.0f);
      return;
    }
    float sum = vmath::exp_shifted_sum(row, n, m);
    vmath::scale(row, n, 1.0f / sum);
  });
}

void log_softmax_rows(const Tensor& x) {
  if (x.rank() == 0) return;
  for_each_row(x, [](float* row, int64_t n) {
    float m = vmath::max(row, n);
    if (all_masked(m)) return;  // all masked: stays -inf
    // exp into a scratch row: log_softmax keeps x - max, not the exponentials.
    thread_local std::vector<float> scratch;
    scratch.assign(row, row + n);
    float sum = vmath::exp_shifted_sum(scratch.data(), n, m);
    vmath::sub_sub(row, n, m, std::log(sum));
  });
}

SoftmaxPiece softmax_piece(const float* x, int64_t n) {
  SoftmaxPiece piece;
  if (n < 1) return piece;
  const float m = vmath::max(x, n);
  if (all_masked(m)) return piece;
  piece.max = m;
  piece.sum = vmath::exp_shifted_sum_double(x, n, m);
  return piece;
}

SoftmaxTotal softmax_total(std::span<const SoftmaxPiece> pieces) {
  SoftmaxTotal total;
  for (const SoftmaxPiece& p : pieces) total.max = std::max(total.max, p.max);
  if (total.max == -std::numeric_limits<float>::infinity()) return total;
  double sum = 0.0;
  for (const SoftmaxPiece& p : pieces)
    if (p.sum > 0.0) sum += p.sum * std::exp(static_cast<double>(p.max) - total.max);
  total.log_sum = std::log(sum);
  return total;
}

void topk(const float* x, int64_t n, int64_t k, std::span<float> values,
          std::span<int64_t> indices) {
  if (k < 0 || k > n || static_cast<int64_t>(values.size()) < k ||
      static_cast<int64_t>(indices.size()) < k)
    throw ShapeError("topk: k = " + std::to_string(k) + " of " + std::to_string(n));
  if (k == 0) return;
  auto better = [x](int64_t a, int64_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); };
  // One pass keeping a sorted list of the k best: k is tiny (2 × beams) and n is the vocabulary,
  // so almost every element is rejected by one comparison with the current k-th best.
  std::vector<int64_t> best;
  best.reserve(k + 1);
  for (int64_t i = 0; i < n; ++i) {
    if (static_cast<int64_t>(best.size()) == k && !better(i, best.back())) continue;
    auto pos = std::upper_bound(best.begin(), best.end(), i,
                                [&](int64_t a, int64_t b) { return better(a, b); });
    best.insert(pos, i);
    if (static_cast<int64_t>(best.size()) > k) best.pop_back();
  }
  for (int64_t j = 0; j < k; ++j) {
    indices[j] = best[j];
    values[j] = x[best[j]];
  }
}

}  // namespace celeriac::nn
