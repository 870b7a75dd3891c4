// Clocks shared by the benchmarks: wall time, and the process's CPU time beside it because on a
// machine shared with other jobs the wall time also measures the scheduler.
#pragma once

#include <algorithm>
#include <chrono>
#include <ctime>
#include <functional>

namespace celeriac::bench {

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// All threads of the process; with 1 thread, CPU time measures the code.
inline double cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// One warm-up call, then at least 3 calls and min_time_s; the best time per call (on a shared
// machine the fastest run is the least disturbed one).
inline double time_best(const std::function<void()>& fn, double min_time_s) {
  fn();
  double best = 1e30;
  const double start = now_s();
  for (int runs = 0; runs < 3 || now_s() - start < min_time_s; ++runs) {
    const double t0 = now_s();
    fn();
    best = std::min(best, now_s() - t0);
  }
  return best;
}

}  // namespace celeriac::bench
