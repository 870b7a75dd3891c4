// add / add_row / gelu / embedding against scalar loops. GELU: |err| <= 1e-5 |want| + 1e-6 vs the
// double erf formula: for x < -2, 1 + erf(x/sqrt 2) cancels and a 1-ulp float erf (PyTorch's as
// much as ours) leaves ~1e-7 absolute error (PyTorch's own values: goldens_test.cc).
#include "nn/elementwise.h"

#include <gtest/gtest.h>

#include <cmath>

#include "nn/test_util.h"
#include "nn/threading.h"

namespace celeriac::nn {
namespace {

using testing::random_tensor;

TEST(Add, ElementwiseAndInPlace) {
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    Tensor a = random_tensor({300, 513}, 1), b = random_tensor({300, 513}, 2);
    std::vector<double> want(a.numel());
    for (int64_t i = 0; i < a.numel(); ++i) want[i] = double(a.data()[i]) + b.data()[i];
    add(a, b, a);
    for (int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(a.data()[i], float(want[i]));
  }
  Tensor a = random_tensor({3}, 1), b = random_tensor({4}, 2);
  EXPECT_THROW(add(a, b, a), ShapeError);
}

TEST(Add, RowBroadcast) {
  Tensor a = random_tensor({5, 7}, 1), row = random_tensor({7}, 2), y = Tensor::empty({5, 7});
  add_row(a, row, y);
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < 7; ++c) ASSERT_EQ(y.data()[r * 7 + c], a.data()[r * 7 + c] + row.data()[c]);
}

TEST(Gelu, ExactErfForm) {
  Tensor x = random_tensor({4, 10001}, 3, -8.0f, 8.0f);
  std::vector<double> want(x.numel());
  for (int64_t i = 0; i < x.numel(); ++i) {
    double v = x.data()[i];
    want[i] = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
  }
  gelu(x);
  double worst = 0;
  for (int64_t i = 0; i < x.numel(); ++i)
    worst = std::max(worst, std::fabs(x.data()[i] - want[i]) / (1e-5 * std::fabs(want[i]) + 1e-6));
  EXPECT_LT(worst, 1.0);
  // The tanh approximation differs by ~1e-3 near x = -2: make sure that is not what runs.
  Tensor p = Tensor::zeros({1});
  p.mutable_data()[0] = -2.0f;
  gelu(p);
  EXPECT_NEAR(p.data()[0], -0.04550026389635842, 1e-7);
}

TEST(Embedding, CopiesRowsAndRejectsBadIds) {
  Tensor table = random_tensor({10, 4}, 1);
  std::vector<int64_t> ids = {3, 0, 9, 3};
  Tensor out = Tensor::empty({4, 4});
  embedding(table, ids, out);
  for (int i = 0; i < 4; ++i)
    for (int d = 0; d < 4; ++d) ASSERT_EQ(out.data()[i * 4 + d], table.data()[ids[i] * 4 + d]);
  std::vector<int64_t> bad = {10};
  Tensor one = Tensor::empty({1, 4});
  EXPECT_THROW(embedding(table, bad, one), ShapeError);
}

}  // namespace
}  // namespace celeriac::nn
