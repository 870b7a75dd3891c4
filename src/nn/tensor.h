// nn::Tensor: a row-major (C-contiguous) float32 tensor that either owns its memory or views memory
// owned elsewhere — above all the memory-mapped weights of a checkpoint, which are read-only views
// and must never be copied. Ops take tensors by const reference and write into tensors the caller
// allocated, so a model can keep its activation buffers across calls.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace celeriac::nn {

// A shape or argument that an op cannot accept: a programming error of the caller (or a checkpoint
// whose tensors passed the loader's checks but not the op's), never a transient condition.
class ShapeError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Up to kMaxRank dimensions, stored inline so that making views on the hot path allocates nothing.
class Shape {
 public:
  static constexpr int kMaxRank = 6;
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(std::span<const int64_t> dims);  // e.g. a loader's std::vector<int64_t> shape
  int rank() const { return rank_; }
  // Negative i counts from the end, as in PyTorch.
  int64_t operator[](int i) const { return dims_[i < 0 ? i + rank_ : i]; }
  int64_t numel() const;
  // A copy with dimension i replaced by value.
  Shape with_dim(int i, int64_t value) const;
  bool operator==(const Shape& other) const;
  std::string to_string() const;  // "[36864, 128]"

 private:
  std::array<int64_t, kMaxRank> dims_{};
  int rank_ = 0;
};

class Tensor {
 public:
  Tensor() = default;  // empty: rank 0, no data

  // Owning, 64-byte aligned, uninitialised / zero-filled.
  static Tensor empty(const Shape& shape);
  static Tensor zeros(const Shape& shape);
  // Owning, zero-filled, on transparent huge pages where the system allows (a 2 MiB-aligned
  // mapping of its own, MADV_HUGEPAGE): for buffers that decode steps stream through every step
  // (copy_to_huge_pages below says why). At least 2 MiB each: for large buffers only.
  static Tensor empty_on_huge_pages(const Shape& shape);
  // Non-owning views. The memory must outlive every tensor made from it.
  static Tensor view(const float* data, const Shape& shape);  // read-only (mapped weights)
  static Tensor view(float* data, const Shape& shape);        // writable (a caller's buffer)

  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  int64_t dim(int i) const { return shape_[i]; }
  int64_t numel() const { return shape_.numel(); }
  bool empty_data() const { return data_ == nullptr; }
  bool writable() const { return writable_; }

  const float* data() const { return data_; }
  // The elements in order (tensors are contiguous), e.g. for a checkpoint's page bookkeeping.
  std::span<const float> values() const { return {data_, static_cast<size_t>(numel())}; }
  // Throws ShapeError for a read-only view: writing into mapped weights would fault or corrupt.
  float* mutable_data() const;

  // Same storage, another shape with the same number of elements.
  Tensor reshape(const Shape& shape) const;
  // Rows [begin, end) along dimension 0 (contiguous), sharing storage.
  Tensor slice0(int64_t begin, int64_t end) const;
  // Product of all dimensions but the last: the M of a [..., K] operand.
  int64_t rows() const { return rank() == 0 ? 0 : numel() / dim(-1); }

 private:
  friend std::vector<Tensor> copy_to_huge_pages(
      std::span<const Tensor>, const std::function<void(const Tensor&, float*)>&);
  std::shared_ptr<void> owner_;  // null for views
  float* data_ = nullptr;
  Shape shape_;
  bool writable_ = false;
};

// Read-only copies of `tensors`, one after the other (64-byte aligned) in one anonymous mapping
// that asks for transparent huge pages (MADV_HUGEPAGE; the system's setting decides): for weights
// that every decode step streams through. A checkpoint's file mapping has 4 KiB pages, and a
// TLB miss on this project's VMs is a two-level walk: streaming reads over 4 KiB pages measured
// 15-25% below the same reads over 2 MiB pages. `copy(src, dst)` fills each copy (default:
// memcpy). The copies share ownership of the mapping.
std::vector<Tensor> copy_to_huge_pages(
    std::span<const Tensor> tensors,
    const std::function<void(const Tensor& src, float* dst)>& copy = {});

// Owning tensors of 256 KiB and more reuse freed buffers of the same size (tensor.cc says why);
// this frees the idle ones now, and the calling thread's oneDNN scratchpad, e.g. after a model
// part that will not run again soon.
void release_cached_buffers();

// Throws ShapeError("<what>: expected <expected>, got <actual>") unless the shapes are equal.
void check_shape(const Tensor& t, const Shape& expected, const char* what);

}  // namespace celeriac::nn
