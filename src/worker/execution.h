// Internal to worker/: what the worker keeps about a running request so that it can stop the
// request from outside (time limits, revoke with terminate, a lost pool child), and the
// pool-wide bookkeeping that goes with it. Fields are guarded by Worker::State::mutex unless
// marked otherwise. Included by worker_state.h.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <optional>
#include <set>
#include <thread>

namespace celeriac::worker {

// A task's time limits in seconds; none = no limit.
struct TimeLimits {
  std::optional<double> hard_s;
  std::optional<double> soft_s;
};

// Per request, from the moment an executor takes it.
struct Execution {
  TimeLimits limits;            // fixed when the task starts (later time_limit commands: next task)
  int job = 0;                  // worker-wide job number, as billiard's "Job: N"
  std::thread::id executor;     // the executor thread running it
  pid_t child_pid = 0;          // process pool: the child running it now; 0 = none (not yet
                                // sent, or already answered): nobody may signal it then
  bool answered = false;        // process pool: the child's reply (or death) is in
  bool soft_sent = false;       // the soft limit fired
  bool hard_limit_hit = false;  // the hard limit fired (process pool: the child was killed)
  int terminate_signal = 0;     // revoke(terminate=True) sent this signal (0 = not terminated)
  // Threads pool: the request's outcome was already recorded (hard limit or terminate) and
  // its thread let go. Read by that thread without the lock when its task returns.
  std::atomic<bool> abandoned{false};
};

// Worker-wide.
struct PoolBookkeeping {
  int next_job = 0;
  std::set<pid_t> child_pids;        // live pool children (stats, inspect)
  int abandoned_threads = 0;         // threads pool: stuck threads let go (they may still run)
  std::condition_variable timer_cv;  // wakes the time-limit thread
};

}  // namespace celeriac::worker
