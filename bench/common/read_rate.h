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

// GB/s reading `bytes` with `threads` threads, over huge pages (MADV_HUGEPAGE, where the system
// allows it) or 4 KiB ones. The buffer is unmapped before returning.
inline double read_gbs(size_t bytes, int threads, double min_time_s, bool huge_pages = true) {
  const size_t block = 4096;  // floats per work item
  const size_t huge = size_t(2) << 20;
  bytes = (bytes + huge - 1) / huge * huge;
  const size_t blocks = bytes / sizeof(float) / block, n = blocks * block;
  void* raw = mmap(nullptr, bytes + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return 0.0;
  float* buf = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(raw) + huge - 1) / huge * huge);
  madvise(buf, bytes, huge_pages ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (size_t b = 0; b < blocks; ++b)  // first touch by the thread that reads the block
    std::fill(buf + b * block, buf + (b + 1) * block, 1.0f);
  volatile float sink = 0;
  const double t = time_best(
      [&] {
        float total = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : total)
        for (size_t b = 0; b < blocks; ++b) total += sum_block(buf + b * block, block);
        sink = sink + total;
      },
      min_time_s);
  munmap(raw, bytes + huge);
  return double(n) * sizeof(float) / t / 1e9;
}

}  // namespace celeriac::bench
