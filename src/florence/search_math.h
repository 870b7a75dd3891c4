// The hot loops of the search that want fast-math to be vectorised: Σ exp(x[i] - shift) in double
// over a vocabulary row (through libmvec), and a row's max (search_math.cc is built with
// -ffast-math; the rest of the search keeps PyTorch's exact float arithmetic, generate.cmake).
#pragma once

#include <cstdint>

namespace celeriac::florence {

// Σ_i exp(double(x[i]) - shift) over x[0, n). Each term within a few ulp of double precision, far
// below the float rounding of the log-probabilities it feeds.
double sum_exp_shifted(const float* x, int64_t n, double shift);

// max_i x[i] over x[0, n) (n >= 1; -inf for n = 0); exact for rows without NaN, which logits are.
float max_value(const float* x, int64_t n);

}  // namespace celeriac::florence
