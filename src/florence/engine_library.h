// The Florence-2 engine module (libceleriac_florence.so), loaded with dlopen on first use.
//
// The engine needs oneDNN, OpenMP and OpenCL's loader: ~4 MiB of resident pages and their
// relocations in every process that links them. The `celeriac` executable links none of them;
// `celeriac caption` (and, next, the worker's tasks.inference_task) load the module when they
// first need a model, as storage/curl_library.h does for libcurl.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>

#include "florence/engine.h"

namespace celeriac::florence {

// The module is missing, cannot be loaded or lacks the factory. The message names the path.
struct EngineUnavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Where the module is looked for: $CELERIAC_ENGINE_LIBRARY when set, else
// libceleriac_florence.so next to the running executable (/proc/self/exe).
std::string engine_library_path();

// Loads the module once per process (thread-safe; the handle stays open) and creates an Engine
// for options; the model itself is read on the Engine's first run(). Throws EngineUnavailable.
std::unique_ptr<Engine> create_engine(const EngineOptions& options);

}  // namespace celeriac::florence
