// C++ client (see app.h).
#include "client/app.h"

#include <unistd.h>

#include <set>

#include "backend/result_backend.h"
#include "broker/transport.h"
#include "celery/codec.h"
#include "celery/message.h"

namespace celeriac::client {

struct App::Connections {
  broker::Transport transport;
  backend::ResultBackend backend;
  backend::ResultWaiter waiter;
  std::set<std::string> declared;  // queues whose binding this client already added
};

TaskFailed::TaskFailed(std::string state, celery::ExceptionInfo info, std::string traceback)
    : std::runtime_error(info.type + ": " + info.message()),
      state_(std::move(state)), info_(std::move(info)), traceback_(std::move(traceback)) {}

std::shared_ptr<App> App::create(const std::string& broker_url, const std::string& backend_url) {
  return std::shared_ptr<App>(new App(broker_url, backend_url.empty() ? broker_url : backend_url));
}

App::App(std::string broker_url, std::string backend_url)
    : broker_url_(std::move(broker_url)), backend_url_(std::move(backend_url)) {
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  origin_ = "gen" + std::to_string(::getpid()) + "@" + host;
  auto burl = redis::Url::parse(broker_url_);
  auto rurl = redis::Url::parse(backend_url_);
  conns_.reset(new Connections{broker::Transport(burl), backend::ResultBackend(rurl),
                               backend::ResultWaiter(rurl), {}});
}

App::~App() = default;

AsyncResult App::send_task(const std::string& name, Json args, Json kwargs,
                           const SendOptions& options) {
  if (args.is_null()) args = Json::array();
  if (kwargs.is_null()) kwargs = Json::object();
  if (!args.is_array()) throw std::invalid_argument("task args must be a JSON array");
  if (!kwargs.is_object()) throw std::invalid_argument("task kwargs must be a JSON object");
  celery::TaskMessage m;
  m.id = options.task_id.empty() ? celery::uuid4() : options.task_id;
  m.task = name;
  m.args = std::move(args);
  m.kwargs = std::move(kwargs);
  double now = celery::unix_now();
  if (options.countdown_s) m.eta = now + *options.countdown_s;
  if (options.eta) m.eta = *options.eta;
  if (options.expires_s) m.expires = now + *options.expires_s;
  m.priority = std::clamp(options.priority, 0, 9);
  m.routing_key = options.queue;
  m.hard_time_limit_s = options.time_limit_s;
  m.soft_time_limit_s = options.soft_time_limit_s;
  m.ignore_result = options.ignore_result;
  m.extra_headers = options.headers;
  m.origin = origin_;
  std::string envelope = celery::encode_task_message(m);
  std::lock_guard lock(mutex_);
  if (conns_->declared.insert(options.queue).second) conns_->transport.declare_queue(options.queue);
  conns_->transport.publish(options.queue, m.priority, envelope);
  return AsyncResult(shared_from_this(), m.id);
}

void App::broadcast(const std::string& method, const Json& arguments) {
  Json body = {{"method", method},
               {"arguments", arguments},
               {"destination", nullptr},
               {"pattern", nullptr},
               {"matcher", nullptr}};
  Json headers = {{"clock", 0}, {"expires", 0}};
  std::string envelope = celery::encode_envelope(body, headers, "celery.pidbox", "", 2);
  std::lock_guard lock(mutex_);
  conns_->transport.publish_fanout("celery.pidbox", "", envelope);
}

std::optional<celery::ResultMeta> AsyncResult::meta() const {
  std::lock_guard lock(app_->mutex_);
  return app_->conns_->backend.get(id_);
}

std::string AsyncResult::state() const {
  auto m = meta();
  return m ? m->status : celery::state::kPending;
}

Json AsyncResult::get(std::chrono::milliseconds timeout) const {
  std::optional<celery::ResultMeta> m;
  {
    std::lock_guard lock(app_->mutex_);
    m = app_->conns_->waiter.wait(id_, timeout);
  }
  if (!m) throw TimeoutError("timed out waiting for task " + id_);
  if (m->status == celery::state::kSuccess) return m->result;
  throw TaskFailed(m->status, celery::ExceptionInfo::from_json(m->result),
                   m->traceback.is_string() ? m->traceback.get<std::string>() : "");
}

void AsyncResult::revoke(bool terminate) const {
  app_->broadcast("revoke", {{"task_id", id_}, {"terminate", terminate}, {"signal", "SIGTERM"}});
}

}  // namespace celeriac::client
