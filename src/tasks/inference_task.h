// tasks.inference_task(url, task_prompt): the reference worker's task (CVxTz/celery_ml_deploy,
// model/worker.py) on the native engine. It fetches the image (storage::fetch: a local path
// under the allowed folders, file://, http(s)://, gs://), runs Florence-2 with the reference's
// generate() settings (3 beams, up to 1,024 new tokens, unless the worker says otherwise) and
// returns the reference's dict: post_process_generation(text, task_prompt, (W, H)), so a
// prompt with its input included ("<CAPTION_TO_PHRASE_GROUNDING>a car") is keyed and parsed as
// the reference does it (pure text under the whole prompt).
//
// Failures are precise and permanent where retrying cannot help: a missing file is
// FileNotFoundError, a path outside the folders or a private address PermissionError, a broken
// image, unknown task or oversized object ValueError; only transient fetch failures (timeouts,
// refused connections, HTTP 5xx/429) are retried, as the reference retries everything
// (max_retries 3, Celery's default delay).
//
// The engine module and the model are loaded by the first task that needs them, so a worker
// that never runs one stays small; the model then serves every executor thread: requests that
// arrive while it is busy run together as one batch (tasks/request_batcher.h).
#pragma once

#include "florence/engine.h"
#include "storage/fetch.h"
#include "worker/registry.h"

namespace celeriac::tasks {

struct InferenceOptions {
  florence::EngineOptions engine;  // model folder or Hub id, generation settings
  storage::FetchOptions fetch;     // folders, size and time limits, private addresses
  int max_batch = 4;               // most requests through the model together
};

void register_inference_task(worker::TaskRegistry& registry, const InferenceOptions& options);

}  // namespace celeriac::tasks
