// Element-wise ops and table lookups: residual add, GELU, embedding rows.
#pragma once

#include <cstdint>
#include <span>

#include "nn/tensor.h"

namespace celeriac::nn {

// y = a + b, same number of elements; y may alias a or b (the residual x += f(x)).
void add(const Tensor& a, const Tensor& b, const Tensor& y);
// y[r, :] = a[r, :] + row[:] for every row r of a[..., C] (positional embeddings).
void add_row(const Tensor& a, const Tensor& row, const Tensor& y);
// In place, exact erf form: 0.5 x (1 + erf(x / sqrt 2)), as torch.nn.GELU() and BART's "gelu".
void gelu(const Tensor& x);

// out[i, :] = table[ids[i], :] for table [V, D], out [ids.size(), D]. Throws ShapeError for an id
// outside [0, V) (a tokenizer/config mismatch, not something to read past the table for).
void embedding(const Tensor& table, std::span<const int64_t> ids, const Tensor& out);

}  // namespace celeriac::nn
