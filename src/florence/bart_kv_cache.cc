// BeamKvCache (see bart_kv_cache.h). The attention is a matrix-vector product per (row, head)
// through the slot indirection, so it cannot be one GEMM; its inner loops are written for the
// vectoriser (this file is built with -O3 -fopenmp-simd, and target_clones adds an AVX2+FMA
// version, as nn/vmath.cc does). Scores follow transformers' order: (q·k)·scale, softmax, ·v.
#include "florence/bart_kv_cache.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "nn/clones.h"
#include "nn/softmax.h"
#include "nn/threading.h"

namespace celeriac::florence {
namespace {

// Where one row's key/value of one head sits: position p's block, the row's physical slot.
struct HeadView {
  const float* base;     // block 0, offset of the head
  int64_t block_stride;  // floats between positions
  int64_t width;         // floats between physical rows
  const int32_t* slots;  // [rows, capacity]
  int64_t capacity;
  const float* at(int64_t row, int64_t p) const {
    return base + p * block_stride + slots[row * capacity + p] * width;
  }
};

// scores[i, p] = (q_i · k(i, p)) · scale for rows [0, rows) and positions [0, len). One call
// per head: the loops stay inside the vectorised clone (a call per dot product cost more than
// the product).
CELERIAC_CLONES void head_scores(const HeadView& k, const float* q, int64_t q_stride, int64_t rows,
                                 int64_t len, int64_t hd, float scale, float* scores) {
  for (int64_t p = 0; p < len; ++p)
    for (int64_t i = 0; i < rows; ++i) {
      const float* qi = q + i * q_stride;
      const float* kp = k.at(i, p);
      float sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t d = 0; d < hd; ++d) sum += qi[d] * kp[d];
      scores[i * len + p] = sum * scale;
    }
}

// out_i = Σ_p weights[i, p] · v(i, p), out rows `out_stride` apart (overwritten).
CELERIAC_CLONES void head_values(const HeadView& v, const float* weights, int64_t rows, int64_t len,
                                 int64_t hd, float* out, int64_t out_stride) {
  for (int64_t i = 0; i < rows; ++i) std::fill_n(out + i * out_stride, hd, 0.0f);
  for (int64_t p = 0; p < len; ++p)
    for (int64_t i = 0; i < rows; ++i) {
      const float w = weights[i * len + p];
      const float* vp = v.at(i, p);
      float* oi = out + i * out_stride;
#pragma omp simd
      for (int64_t d = 0; d < hd; ++d) oi[d] += w * vp[d];
    }
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
  const int64_t hd = width_ / heads, len = length_, rows = rows_;
  const int64_t block_stride = rows * width_;
  // One task per head, positions outermost and rows innermost: beams that share a prefix point
  // at the same physical rows there, so a shared key/value row is read from memory once.
  // ~4·rows·len·hd flops per task: short histories stay on one thread.
  const int64_t grain = std::max<int64_t>(1, 50000 / std::max<int64_t>(1, 4 * rows * len * hd));
  nn::parallel_for(heads, grain, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores;  // [rows, len]
    scores.resize(rows * len);
    for (int64_t h = begin; h < end; ++h) {
      const HeadView k{block(layer, 0, 0) + h * hd, block_stride, width_, slot_.data(), capacity_};
      const HeadView v{block(layer, 1, 0) + h * hd, block_stride, width_, slot_.data(), capacity_};
      head_scores(k, q.data() + h * hd, width_, rows, len, hd, scale, scores.data());
      nn::softmax_rows(nn::Tensor::view(scores.data(), {rows, len}));
      head_values(v, scores.data(), rows, len, hd, out.mutable_data() + h * hd, width_);
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
