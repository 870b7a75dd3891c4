// tasks.inference_task (see inference_task.h).
#include "tasks/inference_task.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <memory>

#include "florence/engine_library.h"
#include "tasks/request_batcher.h"

namespace celeriac::tasks {
namespace {

using celery::Json;
using worker::TaskContext;
using worker::TaskError;

// The reference's task_prompt is a task token, optionally followed by the task's input.
std::pair<std::string, std::optional<std::string>> split_task_prompt(const std::string& prompt) {
  const size_t end = prompt.find('>');
  if (prompt.empty() || prompt[0] != '<' || end == std::string::npos) {
    throw TaskError("ValueError", "task_prompt must start with a task token such as <CAPTION>, not '" +
                                      prompt.substr(0, 64) + "'");
  }
  std::string rest = prompt.substr(end + 1);
  return {prompt.substr(0, end + 1), rest.empty() ? std::nullopt : std::optional(std::move(rest))};
}

const std::string& string_arg(TaskContext& ctx, size_t i, const char* name) {
  const Json& v = ctx.arg(i, name);
  if (!v.is_string()) throw TaskError("TypeError", std::string(name) + " must be a string");
  return v.get_ref<const std::string&>();
}

class InferenceService {
 public:
  explicit InferenceService(InferenceOptions options)
      : options_(std::move(options)),
        batcher_(options_.max_batch, [this](const std::vector<florence::EngineRequest>& batch) {
          spdlog::info("event=inference-batch size={}", batch.size());
          return engine().run(batch);
        }) {}

  Json run(TaskContext& ctx) {
    const std::string& url = string_arg(ctx, 0, "url");
    const std::string& task_prompt = string_arg(ctx, 1, "task_prompt");
    auto [task, text] = split_task_prompt(task_prompt);
    const std::string shown = storage::redact_url(url);

    florence::EngineRequest request;
    request.task = task;
    request.text = text;
    request.answer_task = task_prompt;
    try {
      request.image_bytes = storage::fetch(url, options_.fetch);
    } catch (const storage::FetchError& e) {
      fetch_failed(ctx, e);
    }
    if (request.image_bytes.empty()) throw TaskError("ValueError", shown + ": the object is empty");
    spdlog::info("task=tasks.inference_task id={} event=fetched url={} bytes={}", ctx.id(), shown,
                 request.image_bytes.size());
    ctx.check_cancelled();

    const auto t0 = std::chrono::steady_clock::now();
    florence::EngineResult result;
    try {
      result = batcher_.submit(std::move(request));
    } catch (const florence::EngineError& e) {  // the model could not be loaded
      throw engine_error(e);
    }
    if (result.error) throw engine_error(*result.error);
    spdlog::info("task=tasks.inference_task id={} event=inferred task={} tokens={} seconds={:.3f}",
                 ctx.id(), task, result.generated_ids.size(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return Json(std::move(result.parsed));
  }

 private:
  [[noreturn]] static void fetch_failed(TaskContext& ctx, const storage::FetchError& e) {
    using K = storage::FetchErrorKind;
    switch (e.kind) {
      case K::transient:
        // Worth another try later, as the reference retries (with Celery's default delay).
        ctx.retry(std::nullopt, celery::ExceptionInfo{"ConnectionError", "builtins",
                                                      Json::array({e.what()})});
      case K::not_found: throw TaskError("FileNotFoundError", e.what());
      case K::forbidden: throw TaskError("PermissionError", e.what());
      case K::failed: throw TaskError("OSError", e.what());
      default: throw TaskError("ValueError", e.what());  // bad_url, unsupported, too_large
    }
  }

  static TaskError engine_error(const florence::EngineError& e) {
    using K = florence::EngineErrorKind;
    if (e.kind == K::request || e.kind == K::image) return TaskError("ValueError", e.what());
    return TaskError("RuntimeError", e.what());
  }

  // Created (the module loaded) on first use; the model itself loads in the first run(). Only
  // the batcher's running thread calls it.
  florence::Engine& engine() {
    if (!engine_) {
      try {
        spdlog::info("event=engine-load model={}", options_.engine.model);
        engine_ = florence::create_engine(options_.engine);
      } catch (const florence::EngineUnavailable& e) {
        throw TaskError("RuntimeError", std::string("model: ") + e.what());
      }
    }
    return *engine_;
  }

  const InferenceOptions options_;
  std::unique_ptr<florence::Engine> engine_;
  RequestBatcher batcher_;
};

}  // namespace

void register_inference_task(worker::TaskRegistry& registry, const InferenceOptions& options) {
  auto service = std::make_shared<InferenceService>(options);
  worker::TaskOptions task_options;
  task_options.max_retries = 3;  // the reference's @app.task(max_retries=3)
  registry.add(
      "tasks.inference_task", [service](TaskContext& ctx) { return service->run(ctx); },
      task_options);
}

}  // namespace celeriac::tasks
