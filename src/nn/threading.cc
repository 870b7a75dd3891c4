// Intra-op threads on OpenMP (the runtime Debian's oneDNN uses).
#include "nn/threading.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

namespace celeriac::nn {
namespace {

int default_threads() {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

std::atomic<int>& threads_setting() {
  static std::atomic<int> n{default_threads()};
  return n;
}

}  // namespace

void set_num_threads(int n) { threads_setting().store(std::max(1, n)); }

int num_threads() { return threads_setting().load(std::memory_order_relaxed); }

void detail::apply_num_threads() {
  thread_local int applied = 0;
  int n = num_threads();
  if (applied != n) {
    omp_set_num_threads(n);
    applied = n;
  }
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int64_t max_chunks = (n + grain - 1) / grain;
  int threads = static_cast<int>(std::min<int64_t>(num_threads(), max_chunks));
  if (threads <= 1 || omp_in_parallel()) {
    fn(0, n);
    return;
  }
  // One contiguous chunk per thread: the loops given here are uniform in cost.
#pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num(), team = omp_get_num_threads();
    int64_t begin = n * t / team, end = n * (t + 1) / team;
    if (begin < end) fn(begin, end);
  }
}

void parallel_for_stealing(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int threads = static_cast<int>(std::min<int64_t>(num_threads(), n));
  if (threads <= 1 || omp_in_parallel() || n > INT32_MAX) {
    fn(0, n);
    return;
  }
  // Each share is [lo, hi) in one 64-bit word (lo high, hi low), so that the owner taking from
  // the front and a thief taking from the back never hand out the same item.
  struct alignas(64) Share {
    std::atomic<uint64_t> range;
  };
  std::vector<Share> shares(threads);
  for (int t = 0; t < threads; ++t)
    shares[t].range.store(static_cast<uint64_t>(n * t / threads) << 32 |
                          static_cast<uint64_t>(n * (t + 1) / threads));
  auto take = [](Share& share, bool front) -> int64_t {
    uint64_t cur = share.range.load(std::memory_order_relaxed);
    for (;;) {
      const uint64_t lo = cur >> 32, hi = cur & 0xffffffffu;
      if (lo >= hi) return -1;
      const uint64_t next = front ? (lo + 1) << 32 | hi : lo << 32 | (hi - 1);
      if (share.range.compare_exchange_weak(cur, next, std::memory_order_relaxed))
        return static_cast<int64_t>(front ? lo : hi - 1);
    }
  };
#pragma omp parallel num_threads(threads)
  {
    // A team smaller than asked leaves some shares ownerless: the others' stealing covers them.
    const int me = omp_get_thread_num();
    for (int64_t i; (i = take(shares[me], true)) >= 0;) fn(i, i + 1);
    for (int v = 1; v < threads; ++v) {
      Share& victim = shares[(me + v) % threads];
      for (int64_t i; (i = take(victim, false)) >= 0;) fn(i, i + 1);
    }
  }
}

}  // namespace celeriac::nn
