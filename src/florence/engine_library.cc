// dlopen-based loading of the Florence-2 engine module (see engine_library.h).
#include "florence/engine_library.h"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>

namespace celeriac::florence {
namespace {

using CreateEngine = decltype(&::celeriac_florence_create_engine);

CreateEngine load() {
  const std::string path = engine_library_path();
  // RTLD_LOCAL: the module's oneDNN/OpenMP symbols stay out of the executable's namespace.
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* why = ::dlerror();
    throw EngineUnavailable("cannot load the Florence-2 engine module " + path + ": " +
                            (why ? why : "unknown error") +
                            " (build target celeriac_florence_engine, or set "
                            "CELERIAC_ENGINE_LIBRARY)");
  }
  void* symbol = ::dlsym(handle, "celeriac_florence_create_engine");
  if (!symbol) {
    throw EngineUnavailable(path + " lacks celeriac_florence_create_engine");
  }
  return reinterpret_cast<CreateEngine>(symbol);
}

}  // namespace

std::string engine_library_path() {
  if (const char* env = std::getenv("CELERIAC_ENGINE_LIBRARY"); env && *env) return env;
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  const std::string name = "libceleriac_florence.so";
  return ec ? name : (exe.parent_path() / name).string();
}

std::unique_ptr<Engine> create_engine(const EngineOptions& options) {
  static std::once_flag once;
  static CreateEngine create = nullptr;
  std::call_once(once, [] { create = load(); });  // a throw leaves the flag unset: tried again
  std::string error;
  Engine* engine = create(&options, &error);
  if (!engine) throw EngineUnavailable("cannot create the Florence-2 engine: " + error);
  return std::unique_ptr<Engine>(engine);
}

}  // namespace celeriac::florence
