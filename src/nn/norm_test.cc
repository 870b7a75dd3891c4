// LayerNorm against a double-precision two-pass reference (rel 1e-5), including a row with a large
// mean, where a one-pass variance would lose most digits. PyTorch's own values: goldens_test.cc.
#include "nn/norm.h"

#include <gtest/gtest.h>

#include <cmath>

#include "nn/test_util.h"

namespace celeriac::nn {
namespace {

using testing::random_tensor;

std::vector<double> reference_layer_norm(const Tensor& x, const Tensor& g, const Tensor& b,
                                         double eps) {
  int64_t c = x.dim(-1);
  std::vector<double> y(x.numel());
  for (int64_t r = 0; r < x.rows(); ++r) {
    const float* row = x.data() + r * c;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < c; ++i) mean += row[i];
    mean /= c;
    for (int64_t i = 0; i < c; ++i) var += (row[i] - mean) * (row[i] - mean);
    var /= c;
    for (int64_t i = 0; i < c; ++i)
      y[r * c + i] = (row[i] - mean) / std::sqrt(var + eps) * g.data()[i] + b.data()[i];
  }
  return y;
}

TEST(LayerNorm, MatchesReferenceOutOfPlaceAndInPlace) {
  for (int64_t c : {1, 7, 128, 768, 1000}) {
    Tensor x = random_tensor({33, c}, 1, -3.0f, 5.0f);
    Tensor g = random_tensor({c}, 2, 0.5f, 1.5f);
    Tensor b = random_tensor({c}, 3);
    std::vector<double> want = reference_layer_norm(x, g, b, 1e-5);
    Tensor y = Tensor::empty({33, c});
    layer_norm(x, g, b, 1e-5f, y);
    EXPECT_LT(testing::rel_error(y, want), 1e-5) << "C = " << c;
    layer_norm(x, g, b, 1e-5f, x);
    EXPECT_LT(testing::rel_error(x, want), 1e-5) << "in place, C = " << c;
  }
}

TEST(LayerNorm, LargeMeanRow) {
  Tensor x = random_tensor({4, 256}, 5, 1000.0f, 1001.0f);
  Tensor g = random_tensor({256}, 6);
  Tensor b = random_tensor({256}, 7);
  Tensor y = Tensor::empty({4, 256});
  layer_norm(x, g, b, 1e-5f, y);
  EXPECT_LT(testing::rel_error(y, reference_layer_norm(x, g, b, 1e-5)), 1e-3);
}

TEST(LayerNorm, EpsMatters) {
  // A constant row normalises to beta; eps decides how a tiny variance is scaled.
  Tensor x = Tensor::zeros({1, 4});
  for (int i = 0; i < 4; ++i) x.mutable_data()[i] = i % 2 ? 1e-3f : -1e-3f;
  Tensor g = random_tensor({4}, 1, 1.0f, 1.0001f), b = Tensor::zeros({4});
  Tensor y = Tensor::empty({1, 4});
  layer_norm(x, g, b, 1e-5f, y);
  // var = 1e-6: y = ±1e-3 / sqrt(1.1e-5) = ±0.3015
  EXPECT_NEAR(std::fabs(y.data()[0]), 1e-3 / std::sqrt(1.1e-5), 1e-4);
}

TEST(LayerNorm, RejectsWrongParameterSize) {
  Tensor x = random_tensor({2, 8}, 1), g = random_tensor({7}, 2), b = random_tensor({8}, 3);
  EXPECT_THROW(layer_norm(x, g, b, 1e-5f, x), ShapeError);
}

}  // namespace
}  // namespace celeriac::nn
