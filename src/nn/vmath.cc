// Vectorised row kernels (see vmath.h). Built with -ffast-math (src/nn/CMakeLists.txt sets it for
// this file only); target_clones adds an AVX2+FMA version chosen at load time, the default
// version keeps the library runnable on any x86-64.
#include "nn/vmath.h"

#include <cmath>

#include "nn/clones.h"

namespace celeriac::nn::vmath {

CELERIAC_CLONES float max(const float* x, int64_t n) {
  float m = -INFINITY;
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

CELERIAC_CLONES float exp_shifted_sum(float* x, int64_t n, float shift) {
  // Summed in double: a float running sum over a 51289-entry vocabulary row drifts by ~5e-5
  // relative where the loop is not vectorised (Debug builds), beyond the 1e-5 we promise.
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) {
    float e = std::exp(x[i] - shift);
    x[i] = e;
    sum += e;
  }
  return static_cast<float>(sum);
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) double
exp_shifted_sum_double(const float* x, int64_t n, double shift) {
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i]) - shift);
  return sum;
}

CELERIAC_CLONES void scale(float* x, int64_t n, float s) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

CELERIAC_CLONES void sub_sub(float* x, int64_t n, float a, float b) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] = (x[i] - a) - b;
}

CELERIAC_CLONES void gelu(float* x, int64_t n) {
  constexpr float kInvSqrt2 = 0.70710678118654752440f;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * kInvSqrt2));
}

CELERIAC_CLONES void add(const float* a, const float* b, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

CELERIAC_CLONES void layer_norm(const float* x, float* y, int64_t n, const float* gamma,
                                const float* beta, float eps) {
  // Two passes (mean, then the mean of squared deviations): no cancellation for rows with a large
  // mean, which the one-pass E[x²] - E[x]² would suffer.
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  const float mean = sum / static_cast<float>(n);
  float sq = 0;
#pragma omp simd reduction(+ : sq)
  for (int64_t i = 0; i < n; ++i) sq += (x[i] - mean) * (x[i] - mean);
  const float rstd = 1.0f / std::sqrt(sq / static_cast<float>(n) + eps);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * rstd * gamma[i] + beta[i];
}

}  // namespace celeriac::nn::vmath
