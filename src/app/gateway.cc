// The gateway's routes (see gateway.h). Every answer is JSON except the page, the metrics and
// the event streams; every error is {"error": message} with a status that says whose fault it
// is: 4xx the request's (with what to change), 502/503 a part behind the gateway.
#include "app/gateway.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <optional>

#include "app/metrics.h"
#include "app/multipart.h"
#include "app/result_watch.h"
#include "app/upload_store.h"
#include "celery/json.h"
#include "celery/result.h"
#include "client/app.h"
#include "florence/prompts.h"
#include "redis/connection.h"

namespace celeriac::app {

using celery::Json;

namespace {

// web/index.html, embedded at build time (src/app/CMakeLists.txt).
constexpr const char* kPage =
#include "app/page_html.inc"
    ;

HttpResponse json_response(int status, const Json& body) {
  return {status, "application/json", body.dump(), {}};
}

// A request whose fault is the caller's: answered 4xx with the message.
struct BadRequest {
  int status;
  std::string message;
};

// Task ids as Celery makes them (uuid4) or callers choose them: no separators or controls.
bool valid_task_id(const std::string& id) {
  if (id.empty() || id.size() > 155) return false;
  for (char c : id)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
      return false;
  return true;
}

// The reference's task_prompt is the task token with its input appended
// ("<CAPTION_TO_PHRASE_GROUNDING>a red car"); callers may also give the input apart (`text`).
// Checked here as the worker will check it, so a bad prompt is a 400, not a FAILURE later.
std::string checked_prompt(std::string task_prompt, const std::optional<std::string>& text) {
  std::string token = task_prompt, input;
  if (const size_t close = task_prompt.find('>');
      task_prompt.starts_with("<") && close != std::string::npos) {
    token = task_prompt.substr(0, close + 1);
    input = task_prompt.substr(close + 1);
  }
  if (text && !text->empty()) {
    if (!input.empty())
      throw BadRequest{400, "task_prompt already holds an input; do not send text too"};
    input = *text;
  }
  if (!florence::is_task_token(token))
    throw BadRequest{400, "unknown task prompt " + token + " (GET /api/prompts lists them)"};
  try {
    florence::build_prompt(token,
                           input.empty() ? std::nullopt : std::optional<std::string_view>(input));
  } catch (const florence::PromptError& e) {
    throw BadRequest{400, e.what()};
  }
  return token + input;
}

// What a client sees of a stored meta: the value on SUCCESS, {type, message} for an exception.
Json task_status(const std::string& task_id, const std::optional<celery::ResultMeta>& meta) {
  Json out = {{"task_id", task_id}, {"state", meta ? meta->status : celery::state::kPending}};
  if (!meta) return out;
  const std::string& state = meta->status;
  if (state == celery::state::kSuccess) {
    out["result"] = meta->result;
  } else if (state == celery::state::kFailure || state == celery::state::kRevoked ||
             state == celery::state::kRetry) {
    const celery::ExceptionInfo error = celery::ExceptionInfo::from_json(meta->result);
    out["error"] = {{"type", error.type}, {"message", error.message()}};
  } else if (!meta->result.is_null()) {
    out["info"] = meta->result;  // STARTED: {"pid", "hostname"}
  }
  if (meta->date_done) out["date_done"] = *meta->date_done;
  return out;
}

}  // namespace

struct Gateway::Impl {
  GatewayOptions options;
  UploadStore uploads;
  ResultWatch watch;
  Metrics metrics;
  std::atomic<long> streams{0};
  std::function<size_t()> connection_count;

  std::mutex client_mutex;
  std::shared_ptr<client::App> client_app;  // made on first use, again after a failure

  std::mutex probe_mutex;
  std::unique_ptr<redis::Connection> broker_probe, backend_probe;

  explicit Impl(GatewayOptions o)
      : options(std::move(o)),
        uploads(options.uploads, options.storage),
        watch(redis::Url::parse(options.backend_url)) {}

  std::shared_ptr<client::App> client() {
    std::lock_guard lock(client_mutex);
    if (!client_app) client_app = client::App::create(options.broker_url, options.backend_url);
    return client_app;
  }
  void drop_client() {
    std::lock_guard lock(client_mutex);
    client_app.reset();
  }

  HttpReply route(const HttpRequest& req, std::string& route);
  HttpReply submit(const HttpRequest& req);
  HttpReply upload(const HttpRequest& req);
  HttpReply status(const std::string& id);
  HttpReply events(const std::string& id);
  HttpReply revoke(const std::string& id);
  HttpReply ready();
  HttpReply prompts();

  StoredImage store(std::string_view bytes);
  // The request's image: bytes to store (a view into the body) or a URL.
  struct ImageInput {
    std::optional<std::string_view> bytes;
    std::string url;
  };
  ImageInput image_of(const HttpRequest& req, Json& fields);
};

// The image of a submit; `fields` gets the other form or JSON fields. Multipart: a file in
// "image" (or a "url" field); JSON: {"url"}; a raw image/* body is the image itself.
Gateway::Impl::ImageInput Gateway::Impl::image_of(const HttpRequest& req, Json& fields) {
  const std::string type = req.header("content-type");
  if (const auto boundary = multipart_boundary(type)) {
    std::vector<FormPart> parts;
    try {
      parts = parse_multipart(req.body, *boundary);
    } catch (const MultipartError& e) {
      throw BadRequest{400, e.what()};
    }
    std::optional<std::string_view> image;
    for (const FormPart& part : parts) {
      if (part.name == "image")
        image = part.data;
      else
        fields[part.name] = std::string(part.data);
    }
    if (image) return {image, ""};
  } else if (type.starts_with("application/json")) {
    try {
      fields = Json::parse(req.body);
    } catch (const std::exception&) {
      throw BadRequest{400, "the body is not valid JSON"};
    }
    if (!fields.is_object()) throw BadRequest{400, "the JSON body must be an object"};
  } else if (type.starts_with("image/") || type == "application/octet-stream") {
    return {std::string_view(req.body), ""};
  } else if (!type.empty()) {
    throw BadRequest{415,
                     "send multipart/form-data, application/json or an image/* body, not " + type};
  }
  if (!fields.contains("url") || !fields["url"].is_string())
    throw BadRequest{400, "no image: send a file in the form field \"image\" or an image \"url\""};
  const std::string url = fields["url"].get<std::string>();
  // Server paths (and file://) are the operator's, never the caller's.
  if (!(url.starts_with("http://") || url.starts_with("https://") || url.starts_with("gs://")) ||
      url.size() > 4096)
    throw BadRequest{400, "url must be an http://, https:// or gs:// URL (upload files instead)"};
  return {std::nullopt, url};
}

StoredImage Gateway::Impl::store(std::string_view bytes) {
  if (bytes.empty()) throw BadRequest{400, "the image is empty"};
  if (bytes.size() > options.max_upload_bytes)
    throw BadRequest{413, "the image has " + std::to_string(bytes.size()) +
                              " bytes, more than the limit of " +
                              std::to_string(options.max_upload_bytes)};
  try {
    StoredImage stored = uploads.put(bytes);
    metrics.upload(stored.bytes, stored.created);
    spdlog::info("event=upload-stored sha256={} bytes={} format={} new={}", stored.sha256,
                 stored.bytes, stored.format, stored.created);
    return stored;
  } catch (const NotAnImage& e) {
    throw BadRequest{415, e.what()};
  } catch (const storage::FetchError& e) {
    spdlog::error("event=upload-failed error=\"{}\"", e.what());
    throw BadRequest{502, std::string("storing the upload failed: ") + e.what()};
  }
}

HttpReply Gateway::Impl::submit(const HttpRequest& req) {
  Json fields = Json::object();
  const ImageInput image = image_of(req, fields);
  auto text_field = [&](const char* name) -> std::optional<std::string> {
    if (!fields.contains(name) || fields[name].is_null()) return std::nullopt;
    if (!fields[name].is_string()) throw BadRequest{400, std::string(name) + " must be a string"};
    return fields[name].get<std::string>();
  };
  const std::string prompt = checked_prompt(
      text_field("task_prompt").value_or(options.default_prompt), text_field("text"));
  // Stored only once the request is known to be good.
  const std::string url = image.bytes ? store(*image.bytes).url : image.url;
  client::SendOptions send;
  send.queue = options.queue;
  if (options.task_expires_s > 0) send.expires_s = options.task_expires_s;
  std::string task_id;
  try {
    task_id = client()
                  ->send_task(options.task_name, Json::array({url, prompt}), Json::object(), send)
                  .id();
  } catch (const std::exception& e) {
    drop_client();
    spdlog::error("event=submit-failed error=\"{}\"", e.what());
    return {json_error(503, "the queue is unavailable, try again"), nullptr};
  }
  metrics.task_submitted(prompt.substr(0, prompt.find('>') + 1));
  spdlog::info("event=task-submitted task_id={} task_prompt=\"{}\" url=\"{}\"", task_id, prompt,
               storage::redact_url(url));
  return {json_response(202, {{"task_id", task_id},
                              {"state", celery::state::kPending},
                              {"url", url},
                              {"task_prompt", prompt},
                              {"status_url", "/api/tasks/" + task_id},
                              {"events_url", "/api/tasks/" + task_id + "/events"}}),
          nullptr};
}

HttpReply Gateway::Impl::upload(const HttpRequest& req) {
  const std::string type = req.header("content-type");
  std::string_view bytes = req.body;
  std::vector<FormPart> parts;
  if (const auto boundary = multipart_boundary(type)) {
    try {
      parts = parse_multipart(req.body, *boundary);
    } catch (const MultipartError& e) {
      throw BadRequest{400, e.what()};
    }
    auto it = std::find_if(parts.begin(), parts.end(),
                           [](const FormPart& p) { return p.name == "image"; });
    if (it == parts.end()) throw BadRequest{400, "no form field \"image\""};
    bytes = it->data;
  }
  const StoredImage stored = store(bytes);
  return {json_response(stored.created ? 201 : 200, {{"url", stored.url},
                                                     {"sha256", stored.sha256},
                                                     {"format", stored.format},
                                                     {"bytes", stored.bytes}}),
          nullptr};
}

HttpReply Gateway::Impl::status(const std::string& id) {
  try {
    return {json_response(200, task_status(id, client::AsyncResult(client(), id).meta())), nullptr};
  } catch (const std::exception& e) {
    drop_client();
    spdlog::error("event=status-failed task_id={} error=\"{}\"", id, e.what());
    return {json_error(503, "the result backend is unavailable, try again"), nullptr};
  }
}

HttpReply Gateway::Impl::events(const std::string& id) {
  auto stream = std::make_shared<EventStream>();
  // Each distinct state once, in the order seen; the stream ends with a ready state.
  struct Sent {
    std::mutex mutex;
    std::string last;
  };
  auto sent = std::make_shared<Sent>();
  auto push = [stream, sent, id](const std::optional<celery::ResultMeta>& meta) {
    const std::string data = task_status(id, meta).dump();
    std::lock_guard lock(sent->mutex);
    if (data == sent->last) return;
    sent->last = data;
    stream->send("event: state\ndata: " + data + "\n\n");
    if (meta && celery::is_ready_state(meta->status)) stream->finish();
  };
  const uint64_t watcher = watch.add(id, [push](const celery::ResultMeta& meta) { push(meta); });
  ++streams;
  stream->on_close([this, watcher] {
    watch.remove(watcher);
    --streams;
  });
  try {
    push(client::AsyncResult(client(), id).meta());  // after add(): nothing falls between
  } catch (const std::exception& e) {
    drop_client();  // the watch reads the meta again once Redis is back
    spdlog::warn("event=events-initial-read-failed task_id={} error=\"{}\"", id, e.what());
    stream->send(": the result backend is unavailable, waiting\n\n");
  }
  return {{200, "text/event-stream", "", {}}, stream};
}

HttpReply Gateway::Impl::revoke(const std::string& id) {
  try {
    client::AsyncResult(client(), id).revoke(false);
  } catch (const std::exception& e) {
    drop_client();
    spdlog::error("event=revoke-failed task_id={} error=\"{}\"", id, e.what());
    return {json_error(503, "the broker is unavailable, try again"), nullptr};
  }
  spdlog::info("event=task-revoked task_id={}", id);
  return {json_response(202, {{"task_id", id}, {"revoked", true}}), nullptr};
}

HttpReply Gateway::Impl::ready() {
  // A PING on connections of its own, so readiness never waits behind a busy client.
  auto ping = [](std::unique_ptr<redis::Connection>& conn, const std::string& url) -> std::string {
    try {
      if (!conn) {
        redis::ConnectOptions o;
        o.connect_timeout = std::chrono::milliseconds(1000);
        o.command_timeout = std::chrono::milliseconds(1000);
        conn = std::make_unique<redis::Connection>(redis::Url::parse(url), o);
      }
      conn->command({"PING"}).ok();
      return "ok";
    } catch (const std::exception& e) {
      conn.reset();
      return "unavailable";  // the URL (and its password) stays out of the answer
    }
  };
  std::lock_guard lock(probe_mutex);
  Json checks = {{"broker", ping(broker_probe, options.broker_url)},
                 {"backend", ping(backend_probe, options.backend_url)},
                 {"result_watch", watch.subscribed() ? "ok" : "unavailable"}};
  bool ok = true;
  for (const auto& [name, value] : checks.items()) ok = ok && value == "ok";
  return {
      json_response(ok ? 200 : 503, {{"status", ok ? "ready" : "unavailable"}, {"checks", checks}}),
      nullptr};
}

HttpReply Gateway::Impl::prompts() {
  Json list = Json::array();
  for (std::string_view token : florence::task_tokens())
    list.push_back({{"task_prompt", token},
                    {"input", florence::task_takes_region(token)  ? "region"
                              : florence::task_takes_input(token) ? "text"
                                                                  : "none"}});
  return {json_response(200, {{"default", options.default_prompt}, {"prompts", list}}), nullptr};
}

HttpReply Gateway::Impl::route(const HttpRequest& req, std::string& route) {
  const std::string& p = req.path;
  const bool get = req.method == "GET";
  auto method_not_allowed = [&](const char* allow) {
    HttpResponse r = json_error(405, req.method + " is not allowed here (" + allow + ")");
    r.headers.push_back({"Allow", allow});
    return HttpReply{r, nullptr};
  };
  route = p;
  if (p == "/" || p == "/index.html") {
    route = "/";
    if (!get) return method_not_allowed("GET");
    return {{200, "text/html; charset=utf-8", kPage, {}}, nullptr};
  }
  if (p == "/healthz")
    return get ? HttpReply{json_response(200, {{"status", "ok"}}), nullptr}
               : method_not_allowed("GET");
  if (p == "/readyz") return get ? ready() : method_not_allowed("GET");
  if (p == "/metrics") {
    if (!get) return method_not_allowed("GET");
    const std::vector<Metrics::Gauge> gauges = {
        {"celeriac_app_event_streams", "Open server-sent-event streams.", double(streams.load())},
        {"celeriac_app_connections", "Open HTTP connections.",
         double(connection_count ? connection_count() : 0)},
        {"celeriac_app_result_watch_up", "1 while the result subscription stands.",
         watch.subscribed() ? 1.0 : 0.0}};
    return {{200, "text/plain; version=0.0.4", metrics.render(gauges), {}}, nullptr};
  }
  if (p == "/api/prompts") return get ? prompts() : method_not_allowed("GET");
  if (p == "/api/uploads") return req.method == "POST" ? upload(req) : method_not_allowed("POST");
  if (p == "/api/tasks") return req.method == "POST" ? submit(req) : method_not_allowed("POST");
  const std::string prefix = "/api/tasks/";
  if (p.starts_with(prefix)) {
    std::string id = p.substr(prefix.size());
    const bool stream = id.ends_with("/events");
    if (stream) id.resize(id.size() - 7);
    route = stream ? "/api/tasks/{id}/events" : "/api/tasks/{id}";
    if (!valid_task_id(id)) throw BadRequest{400, "not a task id: letters, digits, '-', '_', '.'"};
    if (stream) return get ? events(id) : method_not_allowed("GET");
    if (get) return status(id);
    if (req.method == "DELETE") return revoke(id);
    return method_not_allowed("GET, DELETE");
  }
  route = "other";
  return {json_error(404, "no such resource: " + p), nullptr};
}

Gateway::Gateway(GatewayOptions options) {
  if (options.backend_url.empty()) options.backend_url = options.broker_url;
  impl_ = std::make_unique<Impl>(std::move(options));
}

Gateway::~Gateway() = default;

void Gateway::set_connection_count(std::function<size_t()> count) {
  impl_->connection_count = std::move(count);
}

HttpReply Gateway::handle(const HttpRequest& request) {
  const auto started = std::chrono::steady_clock::now();
  std::string route;
  HttpReply reply;
  try {
    reply = impl_->route(request, route);
  } catch (const BadRequest& bad) {
    spdlog::info("event=request-refused method={} path={} status={} reason=\"{}\"", request.method,
                 request.path, bad.status, bad.message);
    reply = {json_error(bad.status, bad.message), nullptr};
  }
  impl_->metrics.request(
      route, reply.response.status,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  return reply;
}

}  // namespace celeriac::app
