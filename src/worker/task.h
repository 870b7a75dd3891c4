// What a task function sees and how it reports failure or asks for a retry.
//
// A task is a C++ function registered under a Celery task name. It receives the message's
// JSON args/kwargs through a TaskContext and returns a JSON value (the SUCCESS result).
// To fail, it throws: TaskError carries a Python exception type/module/message so Python
// clients raise a meaningful exception; std::invalid_argument maps to ValueError, JSON type
// errors to TypeError, anything else to Exception. To retry, it calls ctx.retry(...).
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

#include "celery/json.h"
#include "celery/message.h"
#include "celery/result.h"

namespace celeriac::worker {

using celery::Json;

// A failure with a Python exception identity, e.g. TaskError("ValueError", "boom").
class TaskError : public std::runtime_error {
 public:
  TaskError(std::string type, const std::string& message, std::string module = "builtins");
  explicit TaskError(celery::ExceptionInfo info);
  const celery::ExceptionInfo& info() const { return info_; }

 private:
  celery::ExceptionInfo info_;
};

// Thrown by TaskContext::retry; the worker republishes the task and stores RETRY.
struct RetryRequest {
  double countdown_s = 0;
  celery::ExceptionInfo reason;
};

// Thrown by TaskContext::reject, as Celery's Reject exception: the message is not run again
// here; with requeue it goes back to its queue, without it to the dead-letter list (Celery
// would drop it). No result is stored; a task-rejected event is sent.
struct RejectRequest {
  bool requeue = false;
  std::string reason;
};

// Per-task settings, as Celery's task options of the same names.
struct TaskOptions {
  int max_retries = 3;                 // None in Celery = unlimited; here < 0
  double default_retry_delay_s = 180;  // Celery's default: 3 minutes
  // Ack after the result is stored, so a worker dying mid-task loses nothing (the message is
  // restored and runs again). false = Celery's default: ack when the task starts; a crash then
  // loses the task, but a task that must never run twice gets at-most-once.
  bool acks_late = true;
  bool ignore_result = false;          // store no SUCCESS/STARTED
  std::optional<double> time_limit_s;       // hard limit; none = the worker's --time-limit
  std::optional<double> soft_time_limit_s;  // soft limit; none = the worker's --soft-time-limit
};

// Why a running task is asked to stop. Set by the worker, read by the task.
enum class CancelReason : int {
  None = 0,
  Revoked = 1,        // revoke(terminate=True)
  SoftTimeLimit = 2,  // the soft time limit passed
};

// A flag the worker sets from another thread (threads pool) or a signal handler (process
// pool): a lock-free atomic, so setting it is async-signal-safe.
class CancelFlag {
 public:
  void set(CancelReason why) { reason_.store(static_cast<int>(why), std::memory_order_relaxed); }
  void clear() { set(CancelReason::None); }
  CancelReason reason() const {
    return static_cast<CancelReason>(reason_.load(std::memory_order_relaxed));
  }
  bool is_set() const { return reason() != CancelReason::None; }

 private:
  std::atomic<int> reason_{0};
  static_assert(std::atomic<int>::is_always_lock_free);
};

class TaskContext {
 public:
  TaskContext(const celery::TaskMessage& message, const TaskOptions& options,
              std::string hostname, const CancelFlag& cancelled)
      : message_(message), options_(options), hostname_(std::move(hostname)),
        cancelled_(cancelled) {}

  const Json& args() const { return message_.args; }
  const Json& kwargs() const { return message_.kwargs; }
  const std::string& id() const { return message_.id; }
  int retries() const { return message_.retries; }
  const std::string& hostname() const { return hostname_; }
  const celery::TaskMessage& message() const { return message_; }

  // Positional argument i, or keyword argument `name`, as Python's binding does.
  // Throws TaskError(TypeError) when neither is given.
  const Json& arg(size_t i, const char* name) const;
  const Json* optional_arg(size_t i, const char* name) const;

  // Ends the task and schedules it again, like Celery's self.retry(exc=..., countdown=...).
  // When the retry budget (max_retries) is spent, throws the reason as a TaskError instead,
  // so the task ends in FAILURE as in Celery.
  [[noreturn]] void retry(std::optional<double> countdown_s = std::nullopt,
                          std::optional<celery::ExceptionInfo> reason = std::nullopt) const;

  // Refuses the message (Celery's `raise Reject(reason, requeue=...)`).
  [[noreturn]] void reject(bool requeue, std::string reason = "") const {
    throw RejectRequest{requeue, std::move(reason)};
  }

  // True once the task was revoked with terminate or hit its soft time limit. Long tasks
  // check it between steps; a task that never does is stopped from outside: in the process
  // pool its child is signalled or killed, in the threads pool its thread is abandoned.
  bool cancelled() const { return cancelled_.is_set(); }
  CancelReason cancel_reason() const { return cancelled_.reason(); }
  // Throws when cancelled: TaskError SoftTimeLimitExceeded (billiard.exceptions, no args, as
  // Celery stores it) after the soft limit, Terminated after revoke(terminate=True). Uncaught,
  // the first ends the task in FAILURE; the second is stored as REVOKED "terminated" anyway.
  void check_cancelled() const;

 private:
  const celery::TaskMessage& message_;
  const TaskOptions& options_;
  std::string hostname_;
  const CancelFlag& cancelled_;
};

using TaskFunction = std::function<Json(TaskContext&)>;

}  // namespace celeriac::worker
