// The nn/ ops against PyTorch's own outputs (goldens_test_data.inc, made by
// scripts/fixtures/make_nn_goldens.py). Tolerances: GELU |err| <= 1e-5 |want| + 1e-6 (both sides
// use a float erf; 1 + erf cancels in the left tail), softmax rel 1e-5 per element, log_softmax
// abs 1e-5, LayerNorm rel 1e-5 norm-wise.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "nn/elementwise.h"
#include "nn/norm.h"
#include "nn/softmax.h"
#include "nn/tensor.h"

namespace celeriac::nn {
namespace {

#include "nn/goldens_test_data.inc"

constexpr int kN = kGoldenRows * kGoldenCols;

Tensor copy_of(const float* data, const Shape& shape) {
  Tensor t = Tensor::empty(shape);
  std::copy(data, data + shape.numel(), t.mutable_data());
  return t;
}

TEST(TorchGoldens, Gelu) {
  Tensor x = copy_of(kGoldenX, {kGoldenRows, kGoldenCols});
  gelu(x);
  for (int i = 0; i < kN; ++i)
    ASSERT_LE(std::fabs(x.data()[i] - kGoldenGelu[i]), 1e-5 * std::fabs(kGoldenGelu[i]) + 1e-6)
        << "x = " << kGoldenX[i];
}

TEST(TorchGoldens, Softmax) {
  Tensor x = copy_of(kGoldenX, {kGoldenRows, kGoldenCols});
  softmax_rows(x);
  for (int i = 0; i < kN; ++i)
    ASSERT_LE(std::fabs(x.data()[i] - kGoldenSoftmax[i]), 1e-5 * kGoldenSoftmax[i]) << i;
}

TEST(TorchGoldens, LogSoftmax) {
  Tensor x = copy_of(kGoldenX, {kGoldenRows, kGoldenCols});
  log_softmax_rows(x);
  for (int i = 0; i < kN; ++i) ASSERT_NEAR(x.data()[i], kGoldenLogSoftmax[i], 1e-5) << i;
}

TEST(TorchGoldens, LayerNorm) {
  Tensor x = copy_of(kGoldenLnX, {kGoldenRows, kGoldenCols});
  Tensor g = Tensor::view(kGoldenLnGamma, {kGoldenCols});
  Tensor b = Tensor::view(kGoldenLnBeta, {kGoldenCols});
  layer_norm(x, g, b, 1e-5f, x);
  double worst = 0, scale = 0;
  for (int i = 0; i < kN; ++i) {
    worst = std::max(worst, double(std::fabs(x.data()[i] - kGoldenLayerNorm[i])));
    scale = std::max(scale, double(std::fabs(kGoldenLayerNorm[i])));
  }
  EXPECT_LT(worst / scale, 1e-5);
}

}  // namespace
}  // namespace celeriac::nn
