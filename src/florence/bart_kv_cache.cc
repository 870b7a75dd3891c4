// BeamKvCache (see bart_kv_cache.h). The attention is a matrix-vector product per (row, head)
// through the slot indirection, so it cannot be one GEMM; its inner loops are written for the
// vectoriser (this file is built with -O3 -fopenmp-simd, and target_clones adds an AVX2+FMA
// version, as nn/vmath.cc does). Scores follow transformers' order: (q·k)·scale, softmax, ·v.
#include "florence/bart_kv_cache.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "nn/softmax.h"
#include "nn/threading.h"

#define CELERIAC_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))

namespace celeriac::florence {
namespace {

CELERIAC_CLONES float dot(const float* a, const float* b, int64_t n) {
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// y += a · x
CELERIAC_CLONES void axpy(float a, const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

}  // namespace

BeamKvCache::BeamKvCache(int layers, int rows, int capacity, int width)
    : layers_(layers), rows_(rows), capacity_(capacity), width_(width) {
  if (layers < 1 || rows < 1 || capacity < 1 || width < 1)
    throw nn::ShapeError("BeamKvCache: layers " + std::to_string(layers) + ", rows " +
                         std::to_string(rows) + ", capacity " + std::to_string(capacity) +
                         ", width " + std::to_string(width));
  storage_ = nn::Tensor::empty({layers, 2, capacity, rows, width});
  slot_.resize(static_cast<size_t>(rows) * capacity);
  slot_scratch_.resize(slot_.size());
}

float* BeamKvCache::block(int layer, int kind, int position) const {
  const int64_t index = (static_cast<int64_t>(layer) * 2 + kind) * capacity_ + position;
  return storage_.mutable_data() + index * rows_ * width_;
}

int BeamKvCache::append() {
  if (length_ >= capacity_)
    throw std::length_error("decoder cache full: " + std::to_string(capacity_) + " positions");
  const int p = length_++;
  for (int i = 0; i < rows_; ++i) slot_[static_cast<size_t>(i) * capacity_ + p] = i;
  return p;
}

nn::Tensor BeamKvCache::keys(int layer, int position) const {
  return nn::Tensor::view(block(layer, 0, position), {rows_, width_});
}

nn::Tensor BeamKvCache::values(int layer, int position) const {
  return nn::Tensor::view(block(layer, 1, position), {rows_, width_});
}

void BeamKvCache::attend(int layer, const nn::Tensor& q, int heads, float scale,
                         const nn::Tensor& out) const {
  if (q.rows() != rows_ || q.dim(-1) != width_ || out.rows() != rows_ || out.dim(-1) != width_ ||
      heads < 1 || width_ % heads)
    throw nn::ShapeError("BeamKvCache::attend: q " + q.shape().to_string() + ", out " +
                         out.shape().to_string() + ", heads " + std::to_string(heads));
  const int64_t hd = width_ / heads, len = length_, block_stride = int64_t{rows_} * width_;
  const float* k_base = block(layer, 0, 0);
  const float* v_base = block(layer, 1, 0);
  const int64_t tasks = int64_t{rows_} * heads;
  // ~4·len·hd flops per task: short histories stay on one thread.
  const int64_t grain = std::max<int64_t>(1, 50000 / std::max<int64_t>(1, 4 * len * hd));
  nn::parallel_for(tasks, grain, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores;
    scores.resize(len);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t i = t / heads, h = t % heads;
      const int32_t* slots = slot_.data() + i * capacity_;
      const float* qi = q.data() + i * width_ + h * hd;
      for (int64_t p = 0; p < len; ++p)
        scores[p] = dot(qi, k_base + p * block_stride + slots[p] * width_ + h * hd, hd) * scale;
      nn::softmax_rows(nn::Tensor::view(scores.data(), {1, len}));
      float* oi = out.mutable_data() + i * width_ + h * hd;
      std::fill(oi, oi + hd, 0.0f);
      for (int64_t p = 0; p < len; ++p)
        axpy(scores[p], v_base + p * block_stride + slots[p] * width_ + h * hd, oi, hd);
    }
  });
}

void BeamKvCache::reorder(std::span<const int> parents) {
  if (static_cast<int>(parents.size()) != rows_)
    throw std::invalid_argument("reorder: " + std::to_string(parents.size()) + " parents for " +
                                std::to_string(rows_) + " rows");
  for (int parent : parents)
    if (parent < 0 || parent >= rows_)
      throw std::invalid_argument("reorder: parent " + std::to_string(parent) + " outside [0, " +
                                  std::to_string(rows_) + ")");
  for (int i = 0; i < rows_; ++i)
    std::copy_n(slot_.data() + static_cast<size_t>(parents[i]) * capacity_, length_,
                slot_scratch_.data() + static_cast<size_t>(i) * capacity_);
  slot_.swap(slot_scratch_);
}

}  // namespace celeriac::florence
