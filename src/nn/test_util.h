// Helpers shared by the nn/ unit tests: deterministic random tensors and the error measure the
// tolerances are stated in.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "nn/tensor.h"

namespace celeriac::nn::testing {

// Uniform in [lo, hi), from a fixed LCG so failures reproduce.
inline Tensor random_tensor(const Shape& shape, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  Tensor t = Tensor::empty(shape);
  float* p = t.mutable_data();
  for (int64_t i = 0; i < t.numel(); ++i) {
    seed = seed * 1664525u + 1013904223u;
    p[i] = lo + (hi - lo) * static_cast<float>(seed >> 8) / 16777216.0f;
  }
  return t;
}

// max |got - want| / max |want|: a norm-wise relative error, meaningful for outputs with entries
// near zero (a per-element relative error is not, for sums of random terms).
inline double rel_error(const float* got, const std::vector<double>& want) {
  double worst = 0, scale = 1e-30;
  for (size_t i = 0; i < want.size(); ++i) {
    worst = std::max(worst, std::fabs(got[i] - want[i]));
    scale = std::max(scale, std::fabs(want[i]));
  }
  return worst / scale;
}

inline double rel_error(const Tensor& got, const std::vector<double>& want) {
  return rel_error(got.data(), want);
}

}  // namespace celeriac::nn::testing
