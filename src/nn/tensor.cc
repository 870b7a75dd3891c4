// nn::Tensor and nn::Shape.
#include "nn/tensor.h"

#include <cstdlib>
#include <cstring>

namespace celeriac::nn {

Shape::Shape(std::initializer_list<int64_t> dims) {
  if (dims.size() > kMaxRank) throw ShapeError("tensor rank above " + std::to_string(kMaxRank));
  for (int64_t d : dims) {
    if (d < 0) throw ShapeError("negative dimension");
    dims_[rank_++] = d;
  }
}

Shape::Shape(std::span<const int64_t> dims) {
  if (dims.size() > kMaxRank) throw ShapeError("tensor rank above " + std::to_string(kMaxRank));
  for (int64_t d : dims) {
    if (d < 0) throw ShapeError("negative dimension");
    dims_[rank_++] = d;
  }
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= dims_[i];
  return rank_ == 0 ? 0 : n;
}

Shape Shape::with_dim(int i, int64_t value) const {
  Shape s = *this;
  s.dims_[i < 0 ? i + rank_ : i] = value;
  return s;
}

bool Shape::operator==(const Shape& other) const {
  if (rank_ != other.rank_) return false;
  for (int i = 0; i < rank_; ++i)
    if (dims_[i] != other.dims_[i]) return false;
  return true;
}

std::string Shape::to_string() const {
  std::string s = "[";
  for (int i = 0; i < rank_; ++i) s += (i ? ", " : "") + std::to_string(dims_[i]);
  return s + "]";
}

Tensor Tensor::empty(const Shape& shape) {
  // Rounded up to the alignment, as aligned_alloc requires; at least one cache line.
  size_t bytes = (static_cast<size_t>(shape.numel()) * sizeof(float) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes ? bytes : 64);
  if (!p) throw std::bad_alloc();
  Tensor t;
  t.owner_ = std::shared_ptr<void>(p, std::free);
  t.data_ = static_cast<float*>(p);
  t.shape_ = shape;
  t.writable_ = true;
  return t;
}

Tensor Tensor::zeros(const Shape& shape) {
  Tensor t = empty(shape);
  std::memset(t.data_, 0, static_cast<size_t>(shape.numel()) * sizeof(float));
  return t;
}

Tensor Tensor::view(const float* data, const Shape& shape) {
  Tensor t;
  t.data_ = const_cast<float*>(data);  // never written through: writable_ is false
  t.shape_ = shape;
  return t;
}

Tensor Tensor::view(float* data, const Shape& shape) {
  Tensor t;
  t.data_ = data;
  t.shape_ = shape;
  t.writable_ = true;
  return t;
}

float* Tensor::mutable_data() const {
  if (!writable_) throw ShapeError("write into a read-only tensor view " + shape_.to_string());
  return data_;
}

Tensor Tensor::reshape(const Shape& shape) const {
  if (shape.numel() != numel())
    throw ShapeError("reshape " + shape_.to_string() + " -> " + shape.to_string());
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::slice0(int64_t begin, int64_t end) const {
  if (rank() == 0 || begin < 0 || end < begin || end > dim(0))
    throw ShapeError("slice0 [" + std::to_string(begin) + ", " + std::to_string(end) + ") of " +
                     shape_.to_string());
  int64_t row = numel() / dim(0);
  Tensor t = *this;
  t.data_ = data_ + begin * row;
  t.shape_ = shape_.with_dim(0, end - begin);
  return t;
}

void check_shape(const Tensor& t, const Shape& expected, const char* what) {
  if (!(t.shape() == expected))
    throw ShapeError(std::string(what) + ": expected " + expected.to_string() + ", got " +
                     t.shape().to_string());
}

}  // namespace celeriac::nn
