// `celeriac app`: the HTTP gateway in front of the queue. A person uploads an image on its page
// and sees the caption; programs use the same REST + server-sent-events API:
//
//   POST   /api/tasks              submit: multipart (image file + task_prompt [+ text]) or JSON
//                                  {"url": "https://..." | "gs://...", "task_prompt", "text"}
//                                  -> 202 {"task_id", "state", "url", "task_prompt", links}
//   GET    /api/tasks/{id}         -> {"task_id", "state", "result" | "error"}
//   GET    /api/tasks/{id}/events  text/event-stream: an "state" event for the current state and
//                                  each one after it, closed after SUCCESS, FAILURE or REVOKED
//   DELETE /api/tasks/{id}         revoke (as app.control.revoke)
//   POST   /api/uploads            store an image only -> 201 {"url", "sha256", "bytes", ...}
//   GET    /api/prompts            the task prompts and the input each takes
//   GET    /                       the upload page;  /healthz, /readyz, /metrics
//
// Submitting is what the reference app does: the image is stored content-addressed under
// FILES_BASE_PATH (app/upload_store.h) and tasks.inference_task(url, task_prompt) is sent with
// Celery's protocol, so any worker (celeriac or Python) serves it and any Celery client can
// read the result by its id. Clients name images by http(s):// or gs:// URL or upload them;
// paths on the server are never taken from a request.
#pragma once

#include <memory>
#include <string>

#include "app/http_server.h"
#include "storage/fetch.h"

namespace celeriac::app {

struct GatewayOptions {
  std::string broker_url = "redis://127.0.0.1:6379/0";  // CELERY_BROKER_URL / REDIS_URL
  std::string backend_url;                              // empty: the broker's
  std::string uploads = "/tmp";                         // FILES_BASE_PATH: folder or gs://
  std::string queue = "celery";                         // where tasks are sent
  std::string task_name = "tasks.inference_task";
  std::string default_prompt = "<MORE_DETAILED_CAPTION>";  // the reference page's prompt
  size_t max_upload_bytes = 8u << 20;                      // the reference page's upload limit
  double task_expires_s = 0;                               // > 0: tasks expire if not started
  storage::FetchOptions storage;                           // gs:// credentials and endpoint
};

class Gateway {
 public:
  explicit Gateway(GatewayOptions options);
  ~Gateway();
  HttpReply handle(const HttpRequest& request);
  // For /metrics: the server's open connections (set once the server exists).
  void set_connection_count(std::function<size_t()> count);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace celeriac::app
