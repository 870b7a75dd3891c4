// See search_math.h. Built with -O3 -ffast-math (generate.cmake): GCC then calls libmvec's AVX2
// double exp, 4 lanes, where the scalar glibc exp cost ~0.7 ms per 3-beam Florence-2 step.
#include "florence/search_math.h"

#include <cmath>

namespace celeriac::florence {

__attribute__((target_clones("arch=x86-64-v3", "default"))) double sum_exp_shifted(
    const float* x, int64_t n, double shift) {
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i]) - shift);
  return sum;
}

}  // namespace celeriac::florence
