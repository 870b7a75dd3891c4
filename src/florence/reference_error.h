// Relative errors against transformers' reference tensors, shared by the model tests and the
// vision benchmark (header-only: neither links anything for it).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace celeriac::florence {

// max |got - want| / max |want|, with `got` a channels-last map [h, w, C] and `want` NCHW [C, h,
// w].
inline double map_error(const float* got, const float* want, int64_t c, int64_t hw) {
  double worst = 0, scale = 1e-30;
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t t = 0; t < hw; ++t) {
      worst = std::max(worst, double(std::fabs(got[t * c + ch] - want[ch * hw + t])));
      scale = std::max(scale, double(std::fabs(want[ch * hw + t])));
    }
  return worst / scale;
}

// max |got - want| / max |want| over n values in the same order.
inline double flat_error(const float* got, const float* want, int64_t n) {
  double worst = 0, scale = 1e-30;
  for (int64_t i = 0; i < n; ++i) {
    worst = std::max(worst, double(std::fabs(got[i] - want[i])));
    scale = std::max(scale, double(std::fabs(want[i])));
  }
  return worst / scale;
}

}  // namespace celeriac::florence
