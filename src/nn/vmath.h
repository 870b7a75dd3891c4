// Internal to nn/: the element-wise inner loops, compiled (vmath.cc) with -ffast-math and an AVX2
// clone so GCC vectorises them and calls glibc's libmvec for exp/erf (max error ~1 ulp measured
// against double; exp(-inf) = 0 as masks need). Kept in one file so fast-math touches nothing
// else. Each function works on one contiguous row; callers parallelise over rows.
#pragma once

#include <cstdint>

namespace celeriac::nn::vmath {

float max(const float* x, int64_t n);
// x[i] = exp(x[i] - shift); returns the sum of the new values.
float exp_shifted_sum(float* x, int64_t n, float shift);
// Σ exp(double(x[i]) - shift) in double, each term within a few ulp of double precision; the
// AVX-512 clone calls libmvec's 8-lane double exp.
double exp_shifted_sum_double(const float* x, int64_t n, double shift);
// x[i] *= s
void scale(float* x, int64_t n, float s);
// x[i] = (x[i] - a) - b, the order of PyTorch's log_softmax (x - max - log(sum)).
void sub_sub(float* x, int64_t n, float a, float b);
// x[i] = 0.5 x (1 + erf(x / sqrt 2))
void gelu(float* x, int64_t n);
// y = a + b (y may alias a or b)
void add(const float* a, const float* b, float* y, int64_t n);
// y = (x - mean) / sqrt(var + eps) * gamma + beta over one row (biased variance, as LayerNorm).
void layer_norm(const float* x, float* y, int64_t n, const float* gamma, const float* beta,
                float eps);

}  // namespace celeriac::nn::vmath
