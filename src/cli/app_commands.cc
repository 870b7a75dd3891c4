// `celeriac app`: the HTTP gateway (src/app/gateway.h), configured as the reference app is
// (REDIS_URL, FILES_BASE_PATH) plus flags for what it left fixed.
#include <signal.h>
#include <sys/resource.h>

#include <memory>
#include <thread>

#include "app/gateway.h"
#include "app/http_server.h"
#include "cli/commands.h"
#include "cli/common_flags.h"

namespace celeriac::cli {
namespace {

// Each event stream holds a socket: let the process open as many as its hard limit allows.
void raise_open_files_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace

void add_app_command(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("app", "Serve the upload page and the REST + SSE API");
  auto gateway = std::make_shared<app::GatewayOptions>();
  auto server = std::make_shared<app::ServerOptions>();
  auto loglevel = std::make_shared<std::string>("info");
  gateway->broker_url = env_or("CELERY_BROKER_URL", "REDIS_URL", gateway->broker_url);
  gateway->backend_url = env_or("CELERY_RESULT_BACKEND", nullptr, "");
  gateway->uploads = env_or("FILES_BASE_PATH", nullptr, gateway->uploads);
  server->port = std::stoi(env_or("PORT", nullptr, std::to_string(server->port)));
  cmd->add_option("--host", server->host, "Listen address (0.0.0.0 in a container)");
  cmd->add_option("-p,--port", server->port, "Listen port (env PORT; 0 = any free one)");
  cmd->add_option("--threads", server->threads, "I/O threads");
  cmd->add_option("-b,--broker", gateway->broker_url,
                  "Broker URL (env CELERY_BROKER_URL, REDIS_URL)");
  cmd->add_option("--result-backend", gateway->backend_url,
                  "Result backend URL (default: the broker)");
  cmd->add_option("--uploads", gateway->uploads,
                  "Where uploads are stored: a folder the workers read, or gs://bucket/prefix "
                  "(env FILES_BASE_PATH)");
  cmd->add_option("-Q,--queue", gateway->queue, "Queue the tasks are sent to");
  cmd->add_option("--task-prompt", gateway->default_prompt,
                  "Task prompt when a request names none");
  cmd->add_option("--max-upload-bytes", gateway->max_upload_bytes, "Largest image accepted");
  cmd->add_option("--task-expires", gateway->task_expires_s,
                  "Seconds after which an unstarted task is discarded (0 = never)");
  auto read_timeout_s = std::make_shared<int>(static_cast<int>(server->read_timeout.count()));
  cmd->add_option("--read-timeout", *read_timeout_s, "Seconds a request may take to arrive");
  cmd->add_option("--max-connections", server->max_connections, "Open connections at most");
  cmd->add_option("-l,--loglevel", *loglevel, "debug, info, warning, error");
  cmd->callback([=, &exit_code] {
    set_log_level(*loglevel);
    raise_open_files_limit();
    gateway->storage = storage::FetchOptions::from_env();
    // The body limit leaves room for the form around the largest image.
    server->max_body_bytes = gateway->max_upload_bytes + 64 * 1024;
    server->read_timeout = std::chrono::seconds(*read_timeout_s);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    signal(SIGPIPE, SIG_IGN);
    app::Gateway routes(*gateway);
    app::HttpServer http(*server,
                         [&routes](const app::HttpRequest& r) { return routes.handle(r); });
    routes.set_connection_count([&http] { return http.connections(); });
    std::thread signals([&http, set] {
      int sig = 0;
      if (sigwait(&set, &sig) == 0) {
        spdlog::info("event=app-stopping signal={}", sig);
        http.stop();
      }
    });
    signals.detach();
    spdlog::info("event=app-ready listen={}:{} uploads={} queue={}", server->host, http.port(),
                 storage::redact_url(gateway->uploads), gateway->queue);
    http.run();
    exit_code = 0;
  });
}

}  // namespace celeriac::cli
