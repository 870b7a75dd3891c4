// Remote control ("pidbox") commands, answered as a Celery worker answers them
// (celery-on-redis.md §8.5), so app.control.inspect() and Flower work unchanged.
#include <spdlog/spdlog.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>

#include "backend/result_backend.h"
#include "celery/codec.h"
#include "redis/url.h"
#include "worker/time_limits.h"
#include "worker/worker_state.h"

namespace celeriac::worker {
namespace {

using celery::Json;

Json ok(const std::string& text) { return {{"ok", text}}; }
Json error(const std::string& text) { return {{"error", text}}; }

// Argument readers that accept what Python clients send, null included (Flower sends
// terminate=None, n as a string from a form, ...).
std::string string_arg(const Json& args, const char* key) {
  auto it = args.find(key);
  if (it == args.end() || it->is_null()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}
bool bool_arg(const Json& args, const char* key) {
  auto it = args.find(key);
  if (it == args.end() || it->is_null()) return false;
  if (it->is_boolean()) return it->get<bool>();
  if (it->is_number()) return it->get<double>() != 0;
  if (it->is_string()) {
    std::string v = it->get<std::string>();
    return v == "true" || v == "True" || v == "1";
  }
  return false;
}
int int_arg(const Json& args, const char* key, int fallback) {
  auto it = args.find(key);
  if (it == args.end() || it->is_null()) return fallback;
  if (it->is_number()) return it->get<int>();
  if (it->is_string()) {
    try {
      return std::stoi(it->get<std::string>());
    } catch (const std::exception&) {
    }
  }
  return fallback;
}

Json rusage_json() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  auto secs = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  return {{"utime", secs(u.ru_utime)}, {"stime", secs(u.ru_stime)}, {"maxrss", u.ru_maxrss},
          {"ixrss", u.ru_ixrss},       {"idrss", u.ru_idrss},       {"isrss", u.ru_isrss},
          {"minflt", u.ru_minflt},     {"majflt", u.ru_majflt},     {"nswap", u.ru_nswap},
          {"inblock", u.ru_inblock},   {"oublock", u.ru_oublock},   {"msgsnd", u.ru_msgsnd},
          {"msgrcv", u.ru_msgrcv},     {"nsignals", u.ru_nsignals}, {"nvcsw", u.ru_nvcsw},
          {"nivcsw", u.ru_nivcsw}};
}

Json queue_json(const std::string& name) {
  return {{"name", name},
          {"exchange",
           {{"name", name},
            {"type", "direct"},
            {"arguments", nullptr},
            {"durable", true},
            {"passive", false},
            {"auto_delete", false},
            {"delivery_mode", nullptr},
            {"no_declare", false}}},
          {"routing_key", name},
          {"queue_arguments", nullptr},
          {"binding_arguments", nullptr},
          {"consumer_arguments", nullptr},
          {"durable", true},
          {"exclusive", false},
          {"auto_delete", false},
          {"no_ack", false},
          {"alias", nullptr},
          {"bindings", Json::array()},
          {"no_declare", nullptr},
          {"expires", nullptr},
          {"message_ttl", nullptr},
          {"max_length", nullptr},
          {"max_length_bytes", nullptr},
          {"max_priority", nullptr}};
}

// As Celery >= 5.6.2's revoke: REVOKED "revoked" is stored at once for every id not running
// here whose stored state says nobody started or finished it (none, PENDING, RECEIVED, RETRY,
// REJECTED), so a client sees the revoke even before (or without) a worker discarding the
// message. Without the request, as Celery: no group, no parent.
void store_revoked_now(Worker::State& s, const std::vector<std::string>& ids) {
  if (ids.empty()) return;
  try {
    backend::ResultBackend backend(redis::Url::parse(s.options.backend_url),
                                   backend::BackendOptions{s.options.result_expires_s});
    std::vector<celery::ResultMeta> metas;
    for (const auto& id : ids) {
      if (auto meta = backend.get(id)) {
        const std::string& st = meta->status;
        if (st != celery::state::kPending && st != celery::state::kReceived &&
            st != celery::state::kRetry && st != "REJECTED") {
          continue;
        }
      }
      celery::ResultMeta revoked;
      revoked.task_id = id;
      revoked.status = celery::state::kRevoked;
      revoked.result = celery::ExceptionInfo{"TaskRevokedError", "celery.exceptions",
                                             Json::array({"revoked"})}
                           .to_json();
      revoked.date_done = celery::unix_now();
      metas.push_back(std::move(revoked));
    }
    if (!metas.empty()) backend.store(metas);
  } catch (const std::exception& e) {
    spdlog::warn("event=revoke-store-failed error=\"{}\"", e.what());
  }
}

Json stats(Worker::State& s) {
  auto url = redis::Url::parse(s.options.broker_url);
  std::lock_guard lock(s.mutex);
  Json total = Json::object();
  for (const auto& [name, n] : s.total_by_task) total[name] = n;
  Json pids = Json::array();
  bool processes = s.options.pool == PoolKind::Processes;
  if (processes) {
    for (pid_t pid : s.pool.child_pids) pids.push_back(static_cast<int>(pid));
  } else {
    for (int i = 0; i < s.pool_size; ++i) pids.push_back(static_cast<int>(::getpid()));
  }
  return {{"total", total},
          {"pid", static_cast<int>(::getpid())},
          {"clock", std::to_string(s.clock.value())},
          {"uptime", static_cast<long>(celery::unix_now() - s.started_at)},
          {"pool",
           {{"max-concurrency", s.pool_size.load()},
            {"processes", pids},
            {"max-tasks-per-child", "N/A"},
            {"put-guarded-by-semaphore", false},
            {"timeouts", Json::array({0, 0})},
            {"implementation", processes ? "celeriac:processes" : "celeriac:threads"}}},
          {"broker",
           {{"hostname", url.unix_socket.empty() ? url.host : url.unix_socket},
            {"userid", url.username.empty() ? Json() : Json(url.username)},
            {"virtual_host", std::to_string(url.db)},
            {"port", url.port},
            {"insist", false},
            {"ssl", url.tls},
            {"transport", "redis"},
            {"connect_timeout", 4},
            {"transport_options", Json::object()},
            {"login_method", nullptr},
            {"uri_prefix", nullptr},
            {"heartbeat", 120.0},
            {"failover_strategy", "round-robin"},
            {"alternates", Json::array()}}},
          {"prefetch_count", s.prefetch_limit_locked()},
          {"rusage", rusage_json()}};
}

}  // namespace

Json request_info(const Request& r, bool safe, const std::string& hostname) {
  const auto& m = r.message;
  return {{"id", m.id},
          {"name", m.shadow.empty() ? m.task : m.shadow},
          {"args", safe ? Json(m.argsrepr) : m.args},
          {"kwargs", safe ? Json(m.kwargsrepr) : m.kwargs},
          {"type", m.task},
          {"hostname", hostname},
          {"time_start", r.started_at ? Json(*r.started_at) : Json()},
          {"acknowledged", false},
          {"delivery_info",
           {{"exchange", m.exchange},
            {"routing_key", m.routing_key},
            {"priority", m.priority},
            {"redelivered", m.redelivered}}},
          {"worker_pid", !r.started_at           ? Json()
                         : r.exec.child_pid > 0 ? Json(static_cast<int>(r.exec.child_pid))
                                                : Json(static_cast<int>(::getpid()))}};
}

Json handle_control(Worker::State& s, Worker& worker, const std::string& method,
                    const Json& args) {
  if (method == "ping") return ok("pong");
  if (method == "stats") return stats(s);
  if (method == "clock") return {{"clock", s.clock.value()}};
  if (method == "hello") {
    if (string_arg(args, "from_node") == s.hostname) return nullptr;
    std::lock_guard lock(s.mutex);
    Json revoked = Json::object();
    for (const auto& id : s.revoked_order) revoked[id] = celery::unix_now() + 3 * 3600;
    return {{"revoked", revoked}, {"clock", s.clock.value()}};
  }
  if (method == "active") {
    bool safe = bool_arg(args, "safe");
    std::lock_guard lock(s.mutex);
    Json out = Json::array();
    for (const auto& [id, r] : s.active) out.push_back(request_info(*r, safe, s.hostname));
    return out;
  }
  if (method == "reserved") {
    std::lock_guard lock(s.mutex);
    Json out = Json::array();
    for (const auto& r : s.ready) out.push_back(request_info(*r, false, s.hostname));
    return out;
  }
  if (method == "scheduled") {
    std::lock_guard lock(s.mutex);
    Json out = Json::array();
    for (const auto& [eta, r] : s.scheduled) {
      out.push_back({{"eta", celery::format_iso8601_utc(eta)},
                     {"priority", 6},
                     {"request", request_info(*r, false, s.hostname)}});
    }
    return out;
  }
  if (method == "query_task") {
    Json ids = args.value("ids", Json::array());
    if (ids.is_string()) ids = Json::array({ids});
    std::lock_guard lock(s.mutex);
    Json out = Json::object();
    for (const auto& idj : ids) {
      if (!idj.is_string()) continue;
      std::string id = idj.get<std::string>();
      if (auto it = s.active.find(id); it != s.active.end()) {
        out[id] = Json::array({"active", request_info(*it->second, false, s.hostname)});
        continue;
      }
      for (const auto& r : s.ready) {
        if (r->message.id == id) out[id] = Json::array({"reserved", request_info(*r, false, s.hostname)});
      }
    }
    return out;
  }
  if (method == "registered") {
    Json out = Json::array();
    for (const auto& name : s.registry.names()) out.push_back(name);
    return out;
  }
  if (method == "revoked") {
    std::lock_guard lock(s.mutex);
    Json out = Json::array();
    for (const auto& id : s.revoked_order) out.push_back(id);
    return out;
  }
  if (method == "active_queues") {
    std::lock_guard lock(s.mutex);
    Json out = Json::array();
    for (const auto& q : s.queues) out.push_back(queue_json(q));
    return out;
  }
  if (method == "conf") {
    return {{"broker_url", redis::Url::parse(s.options.broker_url).redacted()},
            {"result_backend", redis::Url::parse(s.options.backend_url).redacted()},
            {"worker_concurrency", s.pool_size.load()},
            {"worker_prefetch_multiplier", s.options.prefetch_multiplier},
            {"result_expires", s.options.result_expires_s},
            {"task_default_queue", s.options.queues.front()},
            {"worker_send_task_events", s.events_enabled.load()}};
  }
  if (method == "report") {
    return ok("software -> celeriac:0.1.0 (Celery protocol 2 on Redis)\nnode -> " + s.hostname +
              "\nbroker -> " + redis::Url::parse(s.options.broker_url).redacted() + "\n");
  }
  if (method == "enable_events") {
    bool was = s.events_enabled.exchange(true);
    return ok(was ? "task events already enabled" : "task events enabled");
  }
  if (method == "disable_events") {
    bool was = s.events_enabled.exchange(false);
    return ok(was ? "task events disabled" : "task events already disabled");
  }
  if (method == "heartbeat") return nullptr;  // the next heartbeat goes out within 200 ms anyway
  if (method == "revoke" || method == "terminate") {
    Json ids = args.value("task_id", Json());
    if (ids.is_string()) ids = Json::array({ids});
    if (!ids.is_array()) return error("revoke needs task_id");
    bool terminate = method == "terminate" || bool_arg(args, "terminate");
    int signum = signal_number(string_arg(args, "signal"));
    if (signum == 0) signum = SIGTERM;  // Celery would raise on an unknown name; be lenient
    std::vector<std::string> list;
    std::vector<std::string> terminated;
    std::vector<std::string> not_running;
    {
      std::lock_guard lock(s.mutex);
      for (const auto& id : ids) {
        if (!id.is_string()) continue;
        list.push_back(id.get<std::string>());
        s.add_revoked_locked(list.back());
        if (!s.active.count(list.back())) not_running.push_back(list.back());
        if (terminate) {
          if (auto it = s.active.find(list.back());
              it != s.active.end() && terminate_locked(s, it->second, signum)) {
            terminated.push_back(list.back());
          }
        }
      }
    }
    spdlog::info("event=revoke ids={} terminate={}", fmt::join(list, ","), terminate);
    store_revoked_now(s, not_running);
    std::string joined;
    for (const auto& id : (terminate ? terminated : list)) joined += (joined.empty() ? "" : ", ") + id;
    if (terminate) return ok(terminated.empty() ? "terminate: tasks unknown" : "terminate: " + joined);
    return ok("tasks " + joined + " flagged as revoked");
  }
  if (method == "shutdown") {
    spdlog::info("event=remote-shutdown");
    worker.stop();
    return nullptr;  // Celery never replies to shutdown
  }
  if (method == "pool_grow") {
    int n = int_arg(args, "n", 1);
    if (n < 1) return error("ValueError('n must be positive')");
    grow_pool(s, n);
    return ok("pool will grow");
  }
  if (method == "pool_shrink") {
    int n = int_arg(args, "n", 1);
    if (s.pool_size.load() - n < 1) return error("ValueError(\"Can't shrink pool. All processes busy!\")");
    s.pool_size -= n;
    std::lock_guard lock(s.mutex);
    s.ready_cv.notify_all();
    return ok("pool will shrink");
  }
  if (method == "autoscale") return error("ValueError('Autoscale not enabled')");
  if (method == "add_consumer") {
    std::string queue = string_arg(args, "queue");
    if (queue.empty()) return error("ValueError('add_consumer needs a queue')");
    std::lock_guard lock(s.mutex);
    if (std::find(s.queues.begin(), s.queues.end(), queue) == s.queues.end()) {
      s.queues.push_back(queue);
      s.queues_version++;
      spdlog::info("event=add-consumer queue={}", queue);
      return ok("add consumer " + queue);
    }
    return ok("already consuming from " + celery::python_repr(queue));
  }
  if (method == "cancel_consumer") {
    std::string queue = string_arg(args, "queue");
    std::lock_guard lock(s.mutex);
    auto it = std::find(s.queues.begin(), s.queues.end(), queue);
    if (it != s.queues.end()) {
      s.queues.erase(it);
      s.queues_version++;
      spdlog::info("event=cancel-consumer queue={}", queue);
    }
    return ok("no longer consuming from " + queue);
  }
  if (method == "rate_limit") {
    std::string name = string_arg(args, "task_name");
    if (!s.registry.find(name)) return error("unknown task");
    Json limit = args.value("rate_limit", Json());
    double per_second = 0;
    if (limit.is_number()) {
      per_second = limit.get<double>();
    } else if (limit.is_string() && !limit.get<std::string>().empty()) {
      // "10/s", "100/m", "5/h" or a plain number per second, as Celery parses them.
      std::string text = limit.get<std::string>();
      auto slash = text.find('/');
      try {
        per_second = std::stod(text.substr(0, slash));
      } catch (const std::exception&) {
        return error("Invalid rate limit string: " + celery::python_repr(text));
      }
      if (slash != std::string::npos) {
        char unit = slash + 1 < text.size() ? text[slash + 1] : 's';
        if (unit == 'm') per_second /= 60;
        else if (unit == 'h') per_second /= 3600;
        else if (unit != 's') return error("Invalid rate limit string: " + celery::python_repr(text));
      }
    }
    std::lock_guard lock(s.mutex);
    if (per_second <= 0) {
      s.rate_limits.erase(name);
      return ok("rate limit disabled successfully");
    }
    s.rate_limits[name] = {per_second, 1.0, celery::unix_now()};
    return ok("new rate limit set successfully");
  }
  if (method == "time_limit") {
    std::string name = string_arg(args, "task_name");
    if (!s.registry.find(name)) return error("unknown task");
    auto number = [](const Json& v) -> std::optional<double> {
      if (v.is_number()) return v.get<double>();
      return std::nullopt;
    };
    std::lock_guard lock(s.mutex);
    s.time_limits[name] = {number(args.value("hard", Json())), number(args.value("soft", Json()))};
    return ok("time limits set successfully");
  }
  return error("KeyError('" + method + "')");
}

}  // namespace celeriac::worker
