// Element-wise ops: large tensors split over the intra-op threads, each chunk by vmath.
#include "nn/elementwise.h"

#include <algorithm>
#include <cstring>

#include "nn/threading.h"
#include "nn/vmath.h"

namespace celeriac::nn {

namespace {
constexpr int64_t kGrain = 1 << 15;  // elements per chunk worth a thread hand-off
}

void add(const Tensor& a, const Tensor& b, const Tensor& y) {
  if (a.numel() != b.numel() || a.numel() != y.numel())
    throw ShapeError("add: " + a.shape().to_string() + " + " + b.shape().to_string() + " -> " +
                     y.shape().to_string());
  const float *pa = a.data(), *pb = b.data();
  float* py = y.mutable_data();
  parallel_for(a.numel(), kGrain, [&](int64_t begin, int64_t end) {
    vmath::add(pa + begin, pb + begin, py + begin, end - begin);
  });
}

void add_row(const Tensor& a, const Tensor& row, const Tensor& y) {
  const int64_t c = a.dim(-1);
  if (row.numel() != c || a.numel() != y.numel())
    throw ShapeError("add_row: " + a.shape().to_string() + " + " + row.shape().to_string());
  const float *pa = a.data(), *pr = row.data();
  float* py = y.mutable_data();
  parallel_for(a.rows(), std::max<int64_t>(1, kGrain / std::max<int64_t>(c, 1)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t r = begin; r < end; ++r) vmath::add(pa + r * c, pr, py + r * c, c);
               });
}

void gelu(const Tensor& x) {
  float* p = x.mutable_data();
  parallel_for(x.numel(), kGrain,
               [&](int64_t begin, int64_t end) { vmath::gelu(p + begin, end - begin); });
}

void embedding(const Tensor& table, std::span<const int64_t> ids, const Tensor& out) {
  if (table.rank() != 2 || out.rows() != static_cast<int64_t>(ids.size()) ||
      out.dim(-1) != table.dim(1))
    throw ShapeError("embedding: table " + table.shape().to_string() + ", " +
                     std::to_string(ids.size()) + " ids, out " + out.shape().to_string());
  const int64_t d = table.dim(1);
  float* dst = out.mutable_data();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= table.dim(0))
      throw ShapeError("embedding: id " + std::to_string(ids[i]) + " outside a table of " +
                       std::to_string(table.dim(0)) + " rows");
    std::memcpy(dst + i * d, table.data() + ids[i] * d, d * sizeof(float));
  }
}

}  // namespace celeriac::nn
