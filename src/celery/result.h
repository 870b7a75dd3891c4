// What Celery's Redis result backend stores under celery-task-meta-<id>, and how exceptions
// travel inside it: {"exc_type", "exc_message": [args...], "exc_module"}.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "celery/json.h"

namespace celeriac::celery {

namespace state {
inline constexpr const char* kPending = "PENDING";
inline constexpr const char* kReceived = "RECEIVED";
inline constexpr const char* kStarted = "STARTED";
inline constexpr const char* kRetry = "RETRY";
inline constexpr const char* kFailure = "FAILURE";
inline constexpr const char* kSuccess = "SUCCESS";
inline constexpr const char* kRevoked = "REVOKED";
}  // namespace state

// SUCCESS, FAILURE and REVOKED: the task will not change state again.
bool is_ready_state(std::string_view status);

// An exception as Celery serialises it with the JSON serializer.
struct ExceptionInfo {
  std::string type = "Exception";  // class qualname, e.g. "ValueError"
  std::string module = "builtins";  // e.g. "celery.exceptions"
  Json args = Json::array();        // the exception's args; usually [message]

  Json to_json() const;
  static ExceptionInfo from_json(const Json& j);  // tolerant of missing fields
  // First argument as text ("" when there is none): what a user reads as the message.
  std::string message() const;
  // Python repr, as events carry it: ValueError('boom').
  std::string repr() const;
};

struct ResultMeta {
  std::string task_id;
  std::string status = state::kPending;
  Json result;               // return value, exception object or STARTED info
  Json traceback;            // string or null
  Json children = Json::array();
  std::optional<double> date_done;  // set for ready states
  std::optional<std::string> group_id;
  std::optional<std::string> parent_id;
  Json extended;  // name/args/kwargs/worker/retries/queue (result_extended); null = not stored

  // JSON in Celery's key order; date_done as Celery 5.2-5.3 write it (naive UTC).
  Json to_json() const;
  std::string encode() const { return to_json().dump(); }
  // Accepts what any Celery 5.x writes (date_done naive, +00:00 or other offsets).
  static ResultMeta decode(std::string_view text);
};

// Result-backend key for a task id, and for group/chord bookkeeping.
std::string task_meta_key(std::string_view task_id);
std::string group_meta_key(std::string_view group_id);

}  // namespace celeriac::celery
