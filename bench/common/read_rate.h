// The machine's memory read rate, the ceiling a decode step is judged against (it reads every
// decoder and lm_head weight once): a STREAM-like sum over a buffer far larger than the caches.
// Used by bench/florence's probe and, right after each decode, by its engine side: the read rate
// of a shared machine moves with its neighbours, so a step is compared with a rate taken beside it.
// Needs OpenMP and an AVX2 CPU (callers check).
//
// Page size matters on these VMs: a stream over 4 KiB pages read 15-25% slower than over 2 MiB
// pages (each TLB miss is a two-level walk). The decoder's weights sit on huge pages
// (nn::copy_to_huge_pages), so the bound uses a huge-page buffer too: the machine's best rate.
#pragma once

#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "bench_clock.h"

namespace celeriac::bench {

// Sums the buffer with AVX2 loads into 4 independent vector accumulators, so the loop waits on
// memory, not on add latency or scalar loads (a plain C++ loop at the project's -O2 x86-64
// baseline compiles to scalar adds and measured 2 threads below what the decode loop reaches).
__attribute__((target("avx2"))) inline float sum_block(const float* p, size_t count) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < count; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + i + 24));
  }
  float out[8];
  _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

// A buffer of `bytes` (rounded up to whole 2 MiB pages) on huge pages (MADV_HUGEPAGE, where the
// system allows it) or 4 KiB ones, filled once, each block first touched by the thread that will
// read it, read whole on demand. read_gbs below measures with it; the decode-step bench reads one
// step's worth of bytes right after each step, so that every step has a bound taken within
// milliseconds of it (this machine's read rate flips between two levels within seconds).
class ReadBuffer {
 public:
  ReadBuffer(size_t bytes, int threads, bool huge_pages = true) {
    bytes = (bytes + kHuge - 1) / kHuge * kHuge;
    mapped_ = bytes + kHuge;
    raw_ = mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw_ == MAP_FAILED) {
      raw_ = nullptr;
      return;
    }
    buf_ = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(raw_) + kHuge - 1) / kHuge * kHuge);
    madvise(buf_, bytes, huge_pages ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    blocks_ = bytes / sizeof(float) / kBlock;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t b = 0; b < blocks_; ++b) std::fill(buf_ + b * kBlock, buf_ + (b + 1) * kBlock, 1.0f);
  }
  ~ReadBuffer() {
    if (raw_) munmap(raw_, mapped_);
  }
  ReadBuffer(const ReadBuffer&) = delete;
  ReadBuffer& operator=(const ReadBuffer&) = delete;

  size_t bytes() const { return blocks_ * kBlock * sizeof(float); }  // 0 if mmap failed
  // Seconds to read the whole buffer once with `threads` threads (OpenMP).
  double read_once_s(int threads) {
    const double t0 = now_s();
    float total = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : total)
    for (size_t b = 0; b < blocks_; ++b) total += sum_block(buf_ + b * kBlock, kBlock);
    sink_ = sink_ + total;
    return now_s() - t0;
  }

 private:
  static constexpr size_t kHuge = size_t(2) << 20, kBlock = 4096;  // floats per work item
  void* raw_ = nullptr;
  float* buf_ = nullptr;
  size_t blocks_ = 0, mapped_ = 0;
  volatile float sink_ = 0;
};

// GB/s reading `bytes` with `threads` threads, best over min_time_s. The buffer is unmapped
// before returning.
inline double read_gbs(size_t bytes, int threads, double min_time_s, bool huge_pages = true) {
  ReadBuffer buffer(bytes, threads, huge_pages);
  if (buffer.bytes() == 0) return 0.0;
  const double t = time_best([&] { buffer.read_once_s(threads); }, min_time_s);
  return double(buffer.bytes()) / t / 1e9;
}

}  // namespace celeriac::bench
