// Task-side helpers (see task.h).
#include "worker/task.h"

namespace celeriac::worker {

TaskError::TaskError(std::string type, const std::string& message, std::string module)
    : std::runtime_error(type + ": " + message),
      info_{std::move(type), std::move(module), Json::array({message})} {}

TaskError::TaskError(celery::ExceptionInfo info)
    : std::runtime_error(info.type + ": " + info.message()), info_(std::move(info)) {}

const Json* TaskContext::optional_arg(size_t i, const char* name) const {
  if (message_.args.is_array() && i < message_.args.size()) return &message_.args[i];
  if (message_.kwargs.is_object()) {
    auto it = message_.kwargs.find(name);
    if (it != message_.kwargs.end()) return &*it;
  }
  return nullptr;
}

const Json& TaskContext::arg(size_t i, const char* name) const {
  const Json* v = optional_arg(i, name);
  if (!v) {
    throw TaskError("TypeError", message_.task + "() missing required argument: '" + name + "'");
  }
  return *v;
}

void TaskContext::check_cancelled() const {
  switch (cancelled_.reason()) {
    case CancelReason::None:
      return;
    case CancelReason::SoftTimeLimit:
      throw TaskError(celery::ExceptionInfo{"SoftTimeLimitExceeded", "billiard.exceptions",
                                            Json::array()});
    case CancelReason::Revoked:
      throw TaskError(celery::ExceptionInfo{"Terminated", "billiard.exceptions",
                                            Json::array({"revoked"})});
  }
}

void TaskContext::retry(std::optional<double> countdown_s,
                        std::optional<celery::ExceptionInfo> reason) const {
  celery::ExceptionInfo why =
      reason ? *reason
             : celery::ExceptionInfo{"Retry", "celery.exceptions",
                                     Json::array({"Retry in " +
                                                  std::to_string(static_cast<int>(
                                                      countdown_s.value_or(options_.default_retry_delay_s))) +
                                                  "s"})};
  if (options_.max_retries >= 0 && message_.retries >= options_.max_retries) {
    if (reason) throw TaskError(*reason);
    throw TaskError(celery::ExceptionInfo{
        "MaxRetriesExceededError", "celery.exceptions",
        Json::array({"Can't retry " + message_.task + "[" + message_.id +
                     "] args:" + message_.argsrepr + " kwargs:" + message_.kwargsrepr})});
  }
  throw RetryRequest{countdown_s.value_or(options_.default_retry_delay_s), why};
}

}  // namespace celeriac::worker
