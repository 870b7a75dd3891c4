// Every setting of a worker, built once from the environment and the command line.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace celeriac::worker {

// Where tasks run (--pool). docs/decisions/executor-pool.md has the measurements.
enum class PoolKind {
  Threads,    // executor threads in the worker process: cheapest hand-off, but a task stuck
              // in native code cannot be stopped (its thread is abandoned, see time_limits.h)
  Processes,  // each executor thread drives one child process (Celery's prefork): a task
              // can be killed at its hard limit or by revoke(terminate=True)
};

struct WorkerOptions {
  std::string broker_url = "redis://127.0.0.1:6379/0";  // CELERY_BROKER_URL / REDIS_URL
  std::string backend_url;                  // CELERY_RESULT_BACKEND; empty = broker_url
  std::vector<std::string> queues{"celery"};  // -Q; served round robin
  std::string hostname;                     // -n; empty = celeriac@<host>
  int concurrency = 0;                      // executor threads; 0 = number of CPUs
  int prefetch_multiplier = 4;              // messages held per executor thread
  long result_expires_s = 86400;            // TTL of results; 0 = forever
  bool task_events = false;                 // -E: send task-* events from the start
  double heartbeat_interval_s = 2.0;        // worker-heartbeat period (Flower expects <= 2 s)
  std::string dead_letter_key = "celeriac.deadletter";
  // A message whose worker died while running it this many times is a poison message: it goes
  // to the dead-letter list with a FAILURE result instead of running again. 0 = never.
  int max_deliveries = 5;
  // Messages unacked this long whose holder is not a live celeriac worker (a dead Python
  // worker's) go back to their queues, as kombu's visibility timeout does (same default).
  double visibility_timeout_s = 3600;
  // How long the consumer and the writer wait for a reply from Redis before they take the
  // connection for lost and reconnect (Celery's broker socket_timeout).
  double broker_socket_timeout_s = 30;
  // Idle waiting: the reserve script cannot block, so an idle worker blocks on its first
  // queue's main list (BLMOVE into its staging list, woken at once by a new message) for at
  // most this long, then checks every list again; other lists wait at most this long.
  int idle_poll_max_ms = 100;
  double shutdown_grace_s = 60;             // how long SIGTERM waits for running tasks
  PoolKind pool = PoolKind::Threads;         // --pool threads|processes (prefork)|solo
  // The command that starts one pool child (process pool only): the worker appends nothing;
  // the child speaks the pool protocol on fd 3 (process_pool.h). The CLI sets
  // {"/proc/self/exe", "pool-child", ...} so the child registers the same tasks.
  std::vector<std::string> pool_child_argv;
  std::optional<double> time_limit_s;       // --time-limit: hard limit for every task
  std::optional<double> soft_time_limit_s;  // --soft-time-limit
};

}  // namespace celeriac::worker
