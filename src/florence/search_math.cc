// See search_math.h. Built with -O3 -ffast-math (generate.cmake): GCC then calls libmvec's double
// exp, 4 lanes (AVX2) or 8 (AVX-512), where the scalar glibc exp cost ~0.7 ms per 3-beam
// Florence-2 step.
#include "florence/search_math.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace celeriac::florence {

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) double sum_exp_shifted(
    const float* x, int64_t n, double shift) {
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i]) - shift);
  return sum;
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) float max_value(
    const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

}  // namespace celeriac::florence
