// Internal to worker/: the state the worker's threads share, and the request record that
// follows one task message from reservation to ack. Included by worker.cc and control.cc only.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "celery/message.h"
#include "celery/result.h"
#include "worker/events.h"
#include "worker/execution.h"
#include "worker/options.h"
#include "worker/registry.h"
#include "worker/worker.h"

namespace celeriac::worker {

// One task message held by this worker, from reservation until its ack.
struct Request {
  celery::TaskMessage message;
  std::string queue;
  const RegisteredTask* task = nullptr;  // nullptr: not registered here
  double received_at = 0;
  std::optional<double> started_at;
  CancelFlag cancelled;  // what the task itself sees (ctx.cancelled())
  Execution exec;        // what the worker needs to stop it from outside
};
using RequestPtr = std::shared_ptr<Request>;

// What became of a request; the writer thread turns it into a result, events and an ack.
struct Outcome {
  enum class Kind { Success, Failure, Retry, Revoked, NotRegistered, Rejected };
  RequestPtr request;
  Kind kind = Kind::Success;
  celery::Json value;            // Success
  celery::ExceptionInfo error;   // Failure, Retry
  std::string traceback;         // Failure, Retry
  double runtime_s = 0;
  double retry_countdown_s = 0;  // Retry
  std::string revoke_reason;     // Revoked: "revoked", "expired", "terminated"
  int signum = 0;                // Revoked "terminated": the signal that ended it
  bool requeue = false;          // Rejected: back to the queue (else dead-lettered)
  bool died_running = false;     // Rejected by a lost pool child: the requeue counts a delivery
  // Failure of a poison message: filed in the dead-letter list with this reason when acked.
  std::string dead_letter_reason;
  std::string envelope;          // the message as it was in the queue (dead-letter entries only)
};

struct Worker::State {
  WorkerOptions options;
  TaskRegistry registry;
  std::string hostname;
  double started_at = 0;
  LogicalClock clock;

  std::atomic<bool> stopping{false};
  std::atomic<bool> events_enabled{false};
  std::atomic<int> pool_size{1};

  std::mutex mutex;  // guards everything below
  std::condition_variable ready_cv;     // executors wait for work
  std::condition_variable capacity_cv;  // consumer waits for free prefetch slots / stop
  std::condition_variable writer_cv;    // writer waits for outcomes / events
  std::deque<RequestPtr> ready;                           // reserved, waiting for an executor
  std::multimap<double, RequestPtr> scheduled;            // ETA tasks by due time
  std::unordered_map<std::string, RequestPtr> active;     // running, by task id
  int held = 0;                                           // reserved + scheduled + active + finishing
  // The delivery tags of everything held, from its reservation until the writer's ack (or
  // requeue) has been answered: what celeriac.held.<node> may hold beyond these was reserved
  // without the worker learning of it (a reserve whose reply was lost) and is requeued.
  std::unordered_set<std::string> held_tags;
  std::deque<Outcome> outcomes;
  std::vector<celery::Json> pending_events;               // task events waiting for the writer
  std::unordered_set<std::string> revoked;
  std::deque<std::string> revoked_order;                  // oldest first, to bound the set
  std::map<std::string, long> total_by_task;
  std::unordered_map<std::string, double> average_runtime_s;  // per task name, moving average
  long processed = 0;
  int running_executors = 0;
  int next_executor_id = 0;  // names each executor's field in celeriac.running.<node>
  std::vector<std::string> queues;  // consumed queues (add_consumer / cancel_consumer change it)
  uint64_t queues_version = 0;      // bumped on change so the consumer re-reads them
  // Per task name: token bucket of the rate limit ("10/s"), and time limits set remotely.
  struct RateLimit {
    double per_second = 0;  // 0 = unlimited
    double tokens = 1;
    double updated_at = 0;
  };
  std::map<std::string, RateLimit> rate_limits;
  std::map<std::string, std::pair<std::optional<double>, std::optional<double>>> time_limits;
  bool consumer_waiting = false;  // the consumer sleeps on capacity_cv
  PoolBookkeeping pool;           // process pool children, abandoned threads, job numbers

  std::vector<std::thread> threads;

  int prefetch_limit_locked() const {
    return pool_size.load() * std::max(1, options.prefetch_multiplier) +
           static_cast<int>(scheduled.size());
  }
  bool is_revoked_locked(const std::string& id) const { return revoked.count(id) > 0; }
  void add_revoked_locked(const std::string& id);
  // Task events are only sent while enabled (-E or enable_events).
  void push_event_locked(const std::string& type, celery::Json fields);
};

// Starts `n` more executor threads (pool_grow); they are joined at shutdown.
void grow_pool(Worker::State& state, int n);
// Starts one executor thread without changing the pool size (replaces an abandoned one).
void start_executor_locked(Worker::State& state);
// Hands a finished request's outcome to the writer and frees its prefetch slot.
void finish_locked(Worker::State& state, Outcome outcome);

// Remote control: handles one pidbox request body, returning the reply (or null for none).
// Defined in control.cc.
celery::Json handle_control(Worker::State& state, Worker& worker, const std::string& method,
                            const celery::Json& arguments);

// request-info objects as inspect().active()/reserved() return them.
celery::Json request_info(const Request& r, bool safe, const std::string& hostname);

}  // namespace celeriac::worker
