// Running one task function (see run_task.h).
#include "worker/run_task.h"

#include <chrono>

namespace celeriac::worker {
using celery::Json;

std::string short_traceback(const celery::TaskMessage& m, const celery::ExceptionInfo& e,
                            const std::string& hostname) {
  // No Python frames exist; give the reader what a traceback is for: where and what.
  return "Traceback (most recent call last):\n  File \"celeriac worker " + hostname +
         "\", in task " + m.task + "[" + m.id + "]\n" + e.type + ": " + e.message() + "\n";
}

celery::ExceptionInfo exception_from(const std::exception& e) {
  if (auto* te = dynamic_cast<const TaskError*>(&e)) return te->info();
  if (dynamic_cast<const nlohmann::json::type_error*>(&e) ||
      dynamic_cast<const nlohmann::json::out_of_range*>(&e)) {
    return {"TypeError", "builtins", Json::array({e.what()})};
  }
  if (dynamic_cast<const std::invalid_argument*>(&e) ||
      dynamic_cast<const std::domain_error*>(&e)) {
    return {"ValueError", "builtins", Json::array({e.what()})};
  }
  if (dynamic_cast<const std::out_of_range*>(&e)) {
    return {"IndexError", "builtins", Json::array({e.what()})};
  }
  return {"Exception", "builtins", Json::array({e.what()})};
}

TaskRun run_task(const RegisteredTask& task, const celery::TaskMessage& message,
                 const std::string& hostname, const CancelFlag& cancelled) {
  TaskRun run;
  auto start = std::chrono::steady_clock::now();
  TaskContext ctx(message, task.options, hostname, cancelled);
  try {
    run.value = task.function(ctx);
    run.kind = TaskRun::Kind::Success;
  } catch (const RejectRequest& reject) {
    run.kind = TaskRun::Kind::Rejected;
    run.requeue = reject.requeue;
    run.reject_reason = reject.reason;
  } catch (const RetryRequest& retry) {
    run.kind = TaskRun::Kind::Retry;
    run.error = retry.reason;
    run.retry_countdown_s = retry.countdown_s;
    run.traceback = short_traceback(message, retry.reason, hostname);
  } catch (const std::exception& e) {
    run.kind = TaskRun::Kind::Failure;
    run.error = exception_from(e);
    run.traceback = short_traceback(message, run.error, hostname);
  } catch (...) {
    run.kind = TaskRun::Kind::Failure;
    run.error = {"Exception", "builtins", Json::array({"unknown C++ exception"})};
    run.traceback = short_traceback(message, run.error, hostname);
  }
  run.runtime_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return run;
}

}  // namespace celeriac::worker
