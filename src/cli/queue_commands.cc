// `celeriac worker` and `celeriac call`: the queue side of the command line
// (flags documented in docs/cli-contract.md, named like Celery's).
#include <signal.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <iostream>
#include <optional>
#include <thread>

#include "celery/codec.h"
#include "cli/commands.h"
#include "cli/common_flags.h"
#include "client/app.h"
#include "tasks/builtin_tasks.h"
#include "tasks/inference_task.h"
#include "worker/process_pool.h"
#include "worker/worker.h"

namespace celeriac::cli {
namespace {

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    std::string part = text.substr(start, end - start);
    if (!part.empty()) out.push_back(part);
    start = end + 1;
  }
  return out;
}

// tasks.inference_task's settings, the same on `worker` and on its pool children.
struct InferenceFlags {
  tasks::InferenceOptions options;
  std::vector<std::string> roots;
  std::optional<int> num_beams, max_new_tokens;

  InferenceFlags() {
    options.fetch = storage::FetchOptions::from_env();
    for (const auto& r : options.fetch.roots) roots.push_back(r.string());
    if (const char* m = std::getenv("CELERIAC_MODEL"); m && *m) options.engine.model = m;
  }

  void add_to(CLI::App* cmd) {
    cmd->add_option("--model", options.engine.model,
                    "tasks.inference_task's checkpoint folder or Hub id (env CELERIAC_MODEL; "
                    "loaded by the first task)");
    cmd->add_option("--files-root", roots,
                    "Folders local image paths may be read from (default: FILES_BASE_PATH)");
    cmd->add_flag("--allow-private-urls", options.fetch.allow_private_network,
                  "Let http(s) image URLs reach loopback and private addresses");
    cmd->add_option("--max-image-bytes", options.fetch.max_bytes, "Largest image fetched (bytes)");
    cmd->add_option("--fetch-timeout", options.fetch.timeout_s, "Seconds per image download")
        ->check(CLI::PositiveNumber);
    cmd->add_option("--num-beams", num_beams, "Beams (default: the checkpoint's, 3)");
    cmd->add_option("--max-new-tokens", max_new_tokens, "Most tokens generated (default 1024)");
    cmd->add_flag("--bf16-decoder", options.engine.bf16_decoder, "Decode steps read bf16 weights");
    cmd->add_option("--max-batch", options.max_batch,
                    "Most inference requests run through the model together (default 4)")
        ->check(CLI::PositiveNumber);
  }

  tasks::InferenceOptions resolved() const {
    tasks::InferenceOptions o = options;
    o.fetch.roots.assign(roots.begin(), roots.end());
    o.engine.num_beams = num_beams;
    if (max_new_tokens) o.engine.max_new_tokens = *max_new_tokens;
    return o;
  }

  // The same settings as arguments for a pool child.
  std::vector<std::string> argv() const {
    std::vector<std::string> out = {"--model",           options.engine.model,
                                    "--max-image-bytes", std::to_string(options.fetch.max_bytes),
                                    "--fetch-timeout",   std::to_string(options.fetch.timeout_s)};
    for (const auto& r : roots) out.insert(out.end(), {"--files-root", r});
    if (options.fetch.allow_private_network) out.push_back("--allow-private-urls");
    if (num_beams) out.insert(out.end(), {"--num-beams", std::to_string(*num_beams)});
    if (max_new_tokens)
      out.insert(out.end(), {"--max-new-tokens", std::to_string(*max_new_tokens)});
    if (options.engine.bf16_decoder) out.push_back("--bf16-decoder");
    out.insert(out.end(), {"--max-batch", std::to_string(options.max_batch)});
    return out;
  }
};

}  // namespace

void add_queue_commands(CLI::App& app, int& exit_code) {
  // ---- worker ----
  auto* w = app.add_subcommand("worker", "Consume Celery tasks from Redis and run them");
  auto opts = std::make_shared<worker::WorkerOptions>();
  auto queues = std::make_shared<std::string>("celery");
  auto loglevel = std::make_shared<std::string>("info");
  auto test_tasks = std::make_shared<bool>(false);
  auto pool = std::make_shared<std::string>("threads");
  opts->broker_url = env_or("CELERY_BROKER_URL", "REDIS_URL", opts->broker_url);
  opts->backend_url = env_or("CELERY_RESULT_BACKEND", nullptr, "");
  w->add_option("-b,--broker", opts->broker_url, "Broker URL (env CELERY_BROKER_URL, REDIS_URL)");
  w->add_option("--result-backend", opts->backend_url, "Result backend URL (default: the broker)");
  w->add_option("-c,--concurrency", opts->concurrency, "Executor threads (default: CPUs)");
  w->add_option("-Q,--queues", *queues, "Comma-separated queues to consume");
  w->add_option("-n,--hostname", opts->hostname, "Node name (default celeriac@%h)");
  w->add_option("-l,--loglevel", *loglevel, "debug, info, warning, error");
  w->add_option("--prefetch-multiplier", opts->prefetch_multiplier, "Messages held per thread");
  w->add_option("--result-expires", opts->result_expires_s, "Result TTL in seconds (0 = keep)");
  w->add_flag("-E,--task-events", opts->task_events, "Send task events");
  w->add_flag("--test-tasks", *test_tasks, "Also register the tests.* tasks");
  w->add_option("--dead-letter", opts->dead_letter_key, "List for unprocessable messages");
  w->add_option("-P,--pool", *pool,
                "threads (default), processes (alias prefork: a child process per executor, "
                "killable), solo (one thread)")
      ->check(CLI::IsMember({"threads", "processes", "prefork", "solo"}));
  w->add_option("--time-limit", opts->time_limit_s, "Hard time limit per task, seconds");
  w->add_option("--soft-time-limit", opts->soft_time_limit_s, "Soft time limit per task, seconds");
  w->add_option("--max-deliveries", opts->max_deliveries,
                "Dead-letter a message after its worker died running it this often (0 = never)");
  w->add_option("--visibility-timeout", opts->visibility_timeout_s,
                "Seconds after which messages held by a non-celeriac worker are restored");
  w->add_option("--broker-socket-timeout", opts->broker_socket_timeout_s,
                "Seconds to wait for a Redis reply before reconnecting (default 30)")
      ->check(CLI::PositiveNumber);
  auto inference = std::make_shared<InferenceFlags>();
  inference->add_to(w);
  w->callback([=, &exit_code] {
    set_log_level(*loglevel);
    opts->queues = split_commas(*queues);
    if (*pool == "processes" || *pool == "prefork") {
      opts->pool = worker::PoolKind::Processes;
      // Children re-execute this binary (process_pool.h says why not fork).
      opts->pool_child_argv = {"/proc/self/exe", "pool-child", "-l", *loglevel};
      if (*test_tasks) opts->pool_child_argv.push_back("--test-tasks");
      for (const std::string& a : inference->argv()) opts->pool_child_argv.push_back(a);
    } else if (*pool == "solo") {
      opts->concurrency = 1;  // as Celery's solo pool: one task at a time
    }
    worker::TaskRegistry registry;
    tasks::register_builtin_tasks(registry);
    tasks::register_inference_task(registry, inference->resolved());
    if (*test_tasks) tasks::register_test_tasks(registry);

    // Signals are taken by one thread with sigwait, so no handler runs inside a task.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGQUIT);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    worker::Worker wk(*opts, std::move(registry));
    std::thread signals([&wk, set] {
      int sig = 0;
      int count = 0;
      while (sigwait(&set, &sig) == 0) {
        if (sig == 0) return;
        if (sig == SIGQUIT || ++count > 1) {
          spdlog::warn("event=cold-shutdown signal={}", sig);
          wk.abort_now(1);
        }
        spdlog::info("event=warm-shutdown signal={}", sig);
        wk.stop();
      }
    });
    signals.detach();
    exit_code = wk.run();
  });

  // ---- pool-child (internal: started by `worker --pool processes`) ----
  auto* pc = app.add_subcommand("pool-child", "Internal: a process pool child (fd 3)");
  pc->group("");  // hidden from --help
  auto pc_loglevel = std::make_shared<std::string>("info");
  auto pc_test_tasks = std::make_shared<bool>(false);
  pc->add_option("-l,--loglevel", *pc_loglevel, "debug, info, warning, error");
  pc->add_flag("--test-tasks", *pc_test_tasks, "Also register the tests.* tasks");
  auto pc_inference = std::make_shared<InferenceFlags>();
  pc_inference->add_to(pc);
  pc->callback([=, &exit_code] {
    set_log_level(*pc_loglevel);
    worker::TaskRegistry registry;
    tasks::register_builtin_tasks(registry);
    tasks::register_inference_task(registry, pc_inference->resolved());
    if (*pc_test_tasks) tasks::register_test_tasks(registry);
    exit_code = worker::run_pool_child(3, registry);
  });

  // ---- call ----
  auto* c = app.add_subcommand("call", "Send a task and optionally wait for its result");
  struct CallArgs {
    std::string name;
    std::vector<std::string> args;
    std::string kwargs = "{}";
    std::string broker, backend;
    client::SendOptions send;
    std::optional<double> countdown, expires;
    std::string eta;
    bool wait = false;
    double timeout_s = 60;
  };
  auto a = std::make_shared<CallArgs>();
  a->broker = env_or("CELERY_BROKER_URL", "REDIS_URL", "redis://127.0.0.1:6379/0");
  a->backend = env_or("CELERY_RESULT_BACKEND", nullptr, "");
  c->add_option("name", a->name, "Task name")->required();
  c->add_option("args", a->args, "Positional arguments (JSON, or plain strings)");
  c->add_option("--kwargs", a->kwargs, "Keyword arguments as a JSON object");
  c->add_option("-b,--broker", a->broker, "Broker URL");
  c->add_option("--result-backend", a->backend, "Result backend URL");
  c->add_option("-Q,--queue", a->send.queue, "Queue");
  c->add_option("--countdown", a->countdown, "Seconds to wait before running");
  c->add_option("--eta", a->eta, "ISO-8601 time to run at");
  c->add_option("--expires", a->expires, "Seconds after which the task is discarded");
  c->add_option("--priority", a->send.priority, "0-9 (0 is served first on Redis)");
  c->add_flag("--wait", a->wait, "Wait for the result and print it");
  c->add_option("--timeout", a->timeout_s, "Seconds --wait waits");
  c->callback([a, &exit_code] {
    spdlog::set_level(spdlog::level::warn);
    celery::Json args = celery::Json::array();
    for (const auto& text : a->args) {
      try {
        args.push_back(celery::Json::parse(text));
      } catch (const celery::Json::parse_error&) {
        args.push_back(text);
      }
    }
    celery::Json kwargs;
    try {
      kwargs = celery::Json::parse(a->kwargs);
    } catch (const celery::Json::parse_error& e) {
      std::cerr << "error: --kwargs is not valid JSON: " << e.what() << "\n";
      exit_code = 64;
      return;
    }
    a->send.countdown_s = a->countdown;
    a->send.expires_s = a->expires;
    if (!a->eta.empty()) {
      a->send.eta = celery::parse_iso8601(a->eta);
      if (!a->send.eta) {
        std::cerr << "error: --eta is not an ISO-8601 date-time\n";
        exit_code = 64;
        return;
      }
    }
    auto app = client::App::create(a->broker, a->backend);
    auto result = app->send_task(a->name, args, kwargs, a->send);
    if (!a->wait) {
      std::cout << result.id() << "\n";
      exit_code = 0;
      return;
    }
    try {
      celery::Json value =
          result.get(std::chrono::milliseconds(static_cast<long>(a->timeout_s * 1000)));
      std::cout << value.dump() << "\n";
      exit_code = 0;
    } catch (const client::TaskFailed& e) {
      std::cerr << e.info().type << ": " << e.info().message() << "\n";
      exit_code = 1;
    } catch (const client::TimeoutError& e) {
      std::cerr << "timeout: " << e.what() << "\n";
      exit_code = 2;
    }
  });
}

}  // namespace celeriac::cli
