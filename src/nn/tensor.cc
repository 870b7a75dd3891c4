// nn::Tensor and nn::Shape.
#include "nn/tensor.h"

#include "nn/dnnl_backend.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include <sys/mman.h>

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

namespace {

// A cache of freed activation buffers, by exact size. A model forward allocates the same few
// sizes over and over (DaViT: every block of a stage); buffers of a few MB and more come from
// mmap, so without reuse every one is page-faulted and zeroed by the kernel again (measured on the
// base vision encoder: 268k minor faults, ~1 s of system time per 2 forwards). The model drops
// the cache where a part ends (release_cached_buffers(): each DaViT stage, the whole encoder), so
// idle buffers of one part never raise the peak memory of the next.
// Cached sizes are mapped directly, not through malloc: glibc raises its mmap threshold after
// such frees (up to 32 MB), and buffers below it then live in the heap, which keeps freed memory
// resident after the cache is dropped.
class BufferCache {
 public:
  static BufferCache& instance() {
    static BufferCache* cache = new BufferCache;  // never destroyed: tensors may outlive main
    return *cache;
  }

  void* take(size_t bytes) {
    if (bytes >= kMinCachedBytes) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(bytes);
      if (it != free_.end()) {
        void* p = it->second;
        free_.erase(it);
        cached_bytes_ -= bytes;
        return p;
      }
      void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      return p;
    }
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    return p;
  }

  void give_back(void* p, size_t bytes) {
    if (bytes >= kMinCachedBytes) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_bytes_ + bytes <= kMaxCachedBytes) {
        free_.emplace(bytes, p);
        cached_bytes_ += bytes;
        return;
      }
      munmap(p, bytes);
      return;
    }
    std::free(p);
  }

  void drop_all() {
    std::lock_guard<std::mutex> lock(mutex_);
    drop_all_locked();
  }

 private:
  static constexpr size_t kMinCachedBytes = 256 << 10;  // below this, malloc's own bins reuse
  static constexpr size_t kMaxCachedBytes = size_t(512) << 20;  // beyond: unmapped on free

  void drop_all_locked() {
    for (auto& [size, p] : free_) munmap(p, size);
    free_.clear();
    cached_bytes_ = 0;
  }

  std::mutex mutex_;
  std::multimap<size_t, void*> free_;
  size_t cached_bytes_ = 0;
};

}  // namespace

void release_cached_buffers() {
  BufferCache::instance().drop_all();
  detail::release_scratchpad();
}

Tensor Tensor::empty(const Shape& shape) {
  // Rounded up to the alignment, as aligned_alloc requires; at least one cache line.
  size_t bytes = (static_cast<size_t>(shape.numel()) * sizeof(float) + 63) / 64 * 64;
  if (bytes == 0) bytes = 64;
  void* p = BufferCache::instance().take(bytes);
  Tensor t;
  t.owner_ =
      std::shared_ptr<void>(p, [bytes](void* q) { BufferCache::instance().give_back(q, bytes); });
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

namespace {

// `bytes` of zeroed anonymous memory, 2 MiB aligned, with MADV_HUGEPAGE (advice: without THP the
// memory still works). The owner unmaps it.
std::shared_ptr<void> map_huge_pages(size_t bytes, std::byte** base) {
  constexpr size_t kHuge = size_t(2) << 20;
  bytes = std::max<size_t>(kHuge, (bytes + kHuge - 1) / kHuge * kHuge);
  // A huge page needs a 2 MiB-aligned range: map one page more and start at the first boundary.
  const size_t mapped = bytes + kHuge;
  void* raw = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const auto addr = reinterpret_cast<std::uintptr_t>(raw);
  *base = reinterpret_cast<std::byte*>((addr + kHuge - 1) / kHuge * kHuge);
  madvise(*base, bytes, MADV_HUGEPAGE);
  return std::shared_ptr<void>(raw, [mapped](void* p) { munmap(p, mapped); });
}

}  // namespace

Tensor Tensor::empty_on_huge_pages(const Shape& shape) {
  Tensor t;
  std::byte* base = nullptr;
  t.owner_ = map_huge_pages(static_cast<size_t>(shape.numel()) * sizeof(float), &base);
  t.data_ = reinterpret_cast<float*>(base);
  t.shape_ = shape;
  t.writable_ = true;
  return t;
}

std::vector<Tensor> copy_to_huge_pages(
    std::span<const Tensor> tensors, const std::function<void(const Tensor&, float*)>& copy) {
  auto padded = [](const Tensor& t) { return (static_cast<size_t>(t.numel()) * 4 + 63) / 64 * 64; };
  size_t bytes = 0;
  for (const Tensor& t : tensors) bytes += padded(t);
  if (bytes == 0) return {tensors.begin(), tensors.end()};
  std::byte* base = nullptr;
  const std::shared_ptr<void> owner = map_huge_pages(bytes, &base);
  std::vector<Tensor> out;
  size_t offset = 0;
  for (const Tensor& t : tensors) {
    Tensor c;
    c.owner_ = owner;
    c.data_ = reinterpret_cast<float*>(base + offset);
    c.shape_ = t.shape();  // read-only, like the mapped weights they copy
    if (copy)
      copy(t, c.data_);
    else if (t.numel() > 0)
      std::memcpy(c.data_, t.data(), static_cast<size_t>(t.numel()) * sizeof(float));
    offset += padded(t);
    out.push_back(std::move(c));
  }
  return out;
}

void check_shape(const Tensor& t, const Shape& expected, const char* what) {
  if (!(t.shape() == expected))
    throw ShapeError(std::string(what) + ": expected " + expected.to_string() + ", got " +
                     t.shape().to_string());
}

}  // namespace celeriac::nn
