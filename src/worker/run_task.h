// Runs one task function and classifies how it ended, as Celery's tracer does: a return value
// (SUCCESS), an exception (FAILURE, with the Python exception identity) or a retry request.
// The same code runs in an executor thread (threads pool) and in a pool child (process pool),
// so both pools store exactly the same results.
#pragma once

#include <string>

#include "celery/json.h"
#include "celery/message.h"
#include "celery/result.h"
#include "worker/registry.h"
#include "worker/task.h"

namespace celeriac::worker {

struct TaskRun {
  enum class Kind { Success, Failure, Retry, Rejected };
  Kind kind = Kind::Success;
  celery::Json value;            // Success
  celery::ExceptionInfo error;   // Failure, Retry
  std::string traceback;         // Failure, Retry
  double retry_countdown_s = 0;  // Retry
  bool requeue = false;          // Rejected: back to the queue (else dead-lettered)
  std::string reject_reason;     // Rejected
  double runtime_s = 0;
};

TaskRun run_task(const RegisteredTask& task, const celery::TaskMessage& message,
                 const std::string& hostname, const CancelFlag& cancelled);

// A traceback text for a failure without Python frames: where (worker, task, id) and what.
std::string short_traceback(const celery::TaskMessage& message, const celery::ExceptionInfo& e,
                            const std::string& hostname);

// The exception identity Celery clients see for a C++ exception (TaskError keeps its own).
celery::ExceptionInfo exception_from(const std::exception& e);

}  // namespace celeriac::worker
