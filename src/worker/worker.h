// The worker runtime: consumes Celery task messages from Redis, runs registered C++ tasks on
// executor threads, stores results, sends events and answers remote control.
//
// Threads (each with its own Redis connections; nothing blocks another):
//   consumer   reserves batches of messages (atomic Lua reserve, prefetch limit), decodes them,
//              discards revoked/expired ones, holds ETA tasks until due, feeds the executors.
//   executors  run task functions (--concurrency of them): on the thread itself (--pool threads)
//              or in one child process each (--pool processes; process_pool.h).
//   writer     turns finished tasks into results in batches: child messages (retries,
//              callbacks, chains, chords) first, then one result-store round trip, then one
//              ack + events round trip. Batching is what makes small tasks cheap.
//   control    remote control (pidbox) and worker heartbeats.
//   limits     soft/hard time limits of running tasks (time_limits.h); no Redis.
// Shutdown (SIGTERM or the `shutdown` command) stops consuming, lets running tasks finish,
// returns held-but-unstarted messages to their queues and says worker-offline.
#pragma once

#include <memory>
#include <string>

#include "worker/options.h"
#include "worker/registry.h"

namespace celeriac::worker {

class Worker {
 public:
  Worker(WorkerOptions options, TaskRegistry registry);
  ~Worker();

  // Runs until stop() is called (from any thread or a signal handler thread).
  // Returns the process exit code.
  int run();
  // Asks for a warm shutdown; safe to call from any thread, more than once.
  void stop();
  // Cold shutdown (second SIGTERM, SIGQUIT): puts everything this worker holds back on its
  // queues — running tasks too, counted as a delivery — says worker-offline and ends the
  // process at once with `exit_code`. Redis gets at most ~2 s; if it is unreachable, peers
  // restore the messages when this worker's liveness key expires.
  [[noreturn]] void abort_now(int exit_code);

  const std::string& hostname() const;

  // Shared by the worker's threads; defined in worker_state.h (internal to worker/).
  struct State;

 private:
  std::unique_ptr<State> state_;
};

// The node name for `-n`: empty -> celeriac@<host>; "%h" expands to the host name,
// "%n" to the short host name.
std::string resolve_hostname(const std::string& pattern);

}  // namespace celeriac::worker
