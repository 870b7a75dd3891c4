// Clocks shared by the benchmarks: wall time, and the process's CPU time beside it because on a
// machine shared with other jobs the wall time also measures the scheduler.
#pragma once

#include <chrono>
#include <ctime>

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

}  // namespace celeriac::bench
