// The C++ client: send tasks to any Celery-compatible worker (Python or celeriac) and wait
// for their results, exactly as a Python Celery client does on Redis.
//
//   celeriac::client::App app{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/1"};
//   auto result = app.send_task("tasks.add", {4, 6});
//   Json value = result.get(std::chrono::seconds(10));   // 10; throws TaskFailed on FAILURE
//
// An App is safe to share between threads (each call takes a lock on its connections).
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

#include "celery/json.h"
#include "celery/result.h"

namespace celeriac::client {

using celery::Json;

struct SendOptions {
  std::string queue = "celery";         // routing: anonymous exchange, routing key = queue
  std::optional<double> countdown_s;    // run no earlier than now + countdown
  std::optional<double> eta;            // or at this unix time
  std::optional<double> expires_s;      // discard (REVOKED "expired") after now + expires
  int priority = 0;                     // 0-9; on Redis 0 is served first (kombu's order)
  std::string task_id;                  // empty = new uuid4
  std::optional<double> time_limit_s;   // hard limit
  std::optional<double> soft_time_limit_s;
  bool ignore_result = false;
  Json headers = Json::object();        // extra headers, like apply_async(headers=...)
};

// The task ended in FAILURE (or was revoked): carries Celery's exception identity.
class TaskFailed : public std::runtime_error {
 public:
  TaskFailed(std::string state, celery::ExceptionInfo info, std::string traceback);
  const std::string& state() const { return state_; }
  const celery::ExceptionInfo& info() const { return info_; }
  const std::string& traceback() const { return traceback_; }

 private:
  std::string state_;
  celery::ExceptionInfo info_;
  std::string traceback_;
};

// get() gave up waiting.
struct TimeoutError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class App;

class AsyncResult {
 public:
  AsyncResult(std::shared_ptr<App> app, std::string id) : app_(std::move(app)), id_(std::move(id)) {}
  const std::string& id() const { return id_; }
  // PENDING when nothing is stored yet.
  std::string state() const;
  // The full meta, if stored.
  std::optional<celery::ResultMeta> meta() const;
  // Waits for a ready state; returns the value on SUCCESS, throws TaskFailed on FAILURE or
  // REVOKED and TimeoutError when `timeout` passes first.
  Json get(std::chrono::milliseconds timeout = std::chrono::seconds(60)) const;
  // Broadcasts revoke (with terminate: also stop it if running), as app.control.revoke.
  void revoke(bool terminate = false) const;

 private:
  std::shared_ptr<App> app_;
  std::string id_;
};

class App : public std::enable_shared_from_this<App> {
 public:
  // Use App::create: AsyncResult keeps the App alive.
  static std::shared_ptr<App> create(const std::string& broker_url, const std::string& backend_url = "");
  ~App();

  AsyncResult send_task(const std::string& name, Json args = Json::array(),
                        Json kwargs = Json::object(), const SendOptions& options = {});
  // Sends a remote-control command to every worker (no reply collected).
  void broadcast(const std::string& method, const Json& arguments);

  const std::string& broker_url() const { return broker_url_; }
  const std::string& backend_url() const { return backend_url_; }

 private:
  App(std::string broker_url, std::string backend_url);
  friend class AsyncResult;
  struct Connections;
  std::string broker_url_;
  std::string backend_url_;
  std::string origin_;
  std::mutex mutex_;
  std::unique_ptr<Connections> conns_;
};

}  // namespace celeriac::client
