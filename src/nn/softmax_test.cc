// softmax / log_softmax against double references (rel 1e-5 per element, the outputs are not near
// zero in the ranges used) and top-k against a full sort.
#include "nn/softmax.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "nn/test_util.h"
#include "nn/threading.h"

namespace celeriac::nn {
namespace {

using testing::random_tensor;

std::vector<double> reference_softmax(const Tensor& x, bool log) {
  int64_t c = x.dim(-1);
  std::vector<double> y(x.numel());
  for (int64_t r = 0; r < x.rows(); ++r) {
    const float* row = x.data() + r * c;
    double m = -INFINITY, s = 0;
    for (int64_t i = 0; i < c; ++i) m = std::max(m, double(row[i]));
    for (int64_t i = 0; i < c; ++i) s += std::exp(row[i] - m);
    for (int64_t i = 0; i < c; ++i)
      y[r * c + i] = log ? row[i] - m - std::log(s) : std::exp(row[i] - m) / s;
  }
  return y;
}

double max_elementwise_rel(const Tensor& got, const std::vector<double>& want) {
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i)
    if (want[i] != 0)
      worst = std::max(worst, std::fabs(got.data()[i] - want[i]) / std::fabs(want[i]));
  return worst;
}

TEST(Softmax, MatchesReference) {
  for (int threads : {1, 2})
    for (int64_t c : {1, 5, 144, 577, 51289}) {
      set_num_threads(threads);
      Tensor x = random_tensor({6, c}, 11, -8.0f, 8.0f);
      std::vector<double> want = reference_softmax(x, false);
      softmax_rows(x);
      EXPECT_LT(max_elementwise_rel(x, want), 1e-5) << c;
    }
}

TEST(Softmax, MaskedEntriesGetZero) {
  Tensor x = random_tensor({3, 10}, 2);
  for (int i = 5; i < 10; ++i) x.mutable_data()[10 + i] = -INFINITY;
  for (int i = 0; i < 10; ++i) x.mutable_data()[20 + i] = -INFINITY;
  softmax_rows(x);
  double sum = 0;
  for (int i = 0; i < 10; ++i) sum += x.data()[10 + i];
  EXPECT_NEAR(sum, 1.0, 1e-6);
  for (int i = 5; i < 10; ++i) EXPECT_EQ(x.data()[10 + i], 0.0f);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(x.data()[20 + i], 0.0f);  // fully masked row
}

TEST(LogSoftmax, MatchesReferenceOnVocabularyRows) {
  Tensor x = random_tensor({3, 51289}, 5, -20.0f, 20.0f);
  std::vector<double> want = reference_softmax(x, true);
  log_softmax_rows(x);
  // Absolute error relative to |log p| ~ 40: rel 1e-5 per element where |want| is not tiny.
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i)
    worst = std::max(worst, std::fabs(x.data()[i] - want[i]) / std::max(1.0, std::fabs(want[i])));
  EXPECT_LT(worst, 1e-5);
}

// A vocabulary row cut into uneven pieces, one of them fully masked, combines to the row's max
// and log Σ exp to double precision (what the beam search's log-probabilities are rounded from).
TEST(SoftmaxPiece, PiecesCombineToTheWholeRow) {
  Tensor x = random_tensor({51289}, 11, -30.0f, 30.0f);
  float* v = x.mutable_data();
  for (int i = 1000; i < 1100; ++i) v[i] = -INFINITY;  // one piece below is all masked
  v[7] = -INFINITY;
  long double m = -INFINITY, sum = 0;
  for (int i = 0; i < 51289; ++i) m = std::max(m, static_cast<long double>(v[i]));
  for (int i = 0; i < 51289; ++i) sum += std::exp(static_cast<long double>(v[i]) - m);
  const int64_t cuts[] = {0, 1, 64, 1000, 1100, 25000, 51288, 51289};
  std::vector<SoftmaxPiece> pieces;
  for (size_t c = 0; c + 1 < std::size(cuts); ++c)
    pieces.push_back(softmax_piece(v + cuts[c], cuts[c + 1] - cuts[c]));
  EXPECT_EQ(pieces[3].max, -INFINITY);
  EXPECT_EQ(pieces[3].sum, 0.0);
  const SoftmaxTotal total = softmax_total(pieces);
  EXPECT_EQ(total.max, static_cast<float>(m));
  EXPECT_NEAR(total.log_sum, static_cast<double>(std::log(sum)), 1e-13);
  // One piece of the whole row says the same.
  const SoftmaxTotal whole = softmax_total(std::vector{softmax_piece(v, 51289)});
  EXPECT_EQ(whole.max, total.max);
  EXPECT_NEAR(whole.log_sum, total.log_sum, 1e-13);
}

TEST(SoftmaxPiece, AMaskedRowHasNoTotal) {
  const float masked[] = {-INFINITY, -INFINITY, -INFINITY};
  const SoftmaxTotal total = softmax_total(std::vector{softmax_piece(masked, 3), SoftmaxPiece{}});
  EXPECT_EQ(total.max, -INFINITY);
  EXPECT_EQ(total.log_sum, -INFINITY);
}

TEST(TopK, DescendingWithLowerIndexFirstOnTies) {
  std::vector<float> v = {0.5f, 2.0f, -1.0f, 2.0f, 7.0f, 0.5f, -INFINITY, 2.0f};
  std::vector<float> vals(4);
  std::vector<int64_t> idx(4);
  topk(v.data(), v.size(), 4, vals, idx);
  EXPECT_EQ(idx, (std::vector<int64_t>{4, 1, 3, 7}));
  EXPECT_EQ(vals, (std::vector<float>{7.0f, 2.0f, 2.0f, 2.0f}));
}

TEST(TopK, MatchesStableSortOnRandomRows) {
  Tensor x = random_tensor({3 * 51289}, 3);
  std::vector<int64_t> order(x.numel());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return x.data()[a] > x.data()[b]; });
  std::vector<float> vals(6);
  std::vector<int64_t> idx(6);
  topk(x.data(), x.numel(), 6, vals, idx);
  for (int j = 0; j < 6; ++j) EXPECT_EQ(idx[j], order[j]);
  EXPECT_THROW(topk(x.data(), 3, 4, vals, idx), ShapeError);
}

}  // namespace
}  // namespace celeriac::nn
