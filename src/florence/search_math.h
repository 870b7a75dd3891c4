// The one hot loop of the search that wants fast-math: Σ exp(x[i] - shift) in double over a
// vocabulary row, vectorised through libmvec (search_math.cc is built with -ffast-math; the rest
// of the search keeps PyTorch's exact float arithmetic, generate.cmake).
#pragma once

#include <cstdint>

namespace celeriac::florence {

// Σ_i exp(double(x[i]) - shift) over x[0, n). Each term within a few ulp of double precision, far
// below the float rounding of the log-probabilities it feeds.
double sum_exp_shifted(const float* x, int64_t n, double shift);

}  // namespace celeriac::florence
