// dlopen-based loading of libcurl (see curl_library.h).
#include "storage/curl_library.h"

#include <dlfcn.h>

#include <mutex>
#include <string>

namespace celeriac::storage {
namespace {

template <typename Fn>
void resolve(void* handle, const char* name, Fn& out) {
  void* symbol = ::dlsym(handle, name);
  if (!symbol) throw CurlUnavailable(std::string("libcurl lacks ") + name);
  out = reinterpret_cast<Fn>(symbol);
}

CurlLibrary load() {
  void* handle = ::dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* why = ::dlerror();
    throw CurlUnavailable(std::string("cannot load libcurl.so.4 (apt-get install libcurl4): ") +
                          (why ? why : "unknown error"));
  }
  CurlLibrary lib{};
  resolve(handle, "curl_easy_init", lib.easy_init);
  resolve(handle, "curl_easy_setopt", lib.easy_setopt);
  resolve(handle, "curl_easy_perform", lib.easy_perform);
  resolve(handle, "curl_easy_getinfo", lib.easy_getinfo);
  resolve(handle, "curl_easy_cleanup", lib.easy_cleanup);
  resolve(handle, "curl_easy_strerror", lib.easy_strerror);
  resolve(handle, "curl_slist_append", lib.slist_append);
  resolve(handle, "curl_slist_free_all", lib.slist_free_all);
  decltype(&::curl_global_init) global_init = nullptr;
  resolve(handle, "curl_global_init", global_init);
  // The handle stays open for the life of the process, as libcurl expects.
  if (global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) throw CurlUnavailable("curl_global_init failed");
  return lib;
}

}  // namespace

const CurlLibrary& curl_library() {
  static std::once_flag once;
  static CurlLibrary lib;
  std::call_once(once, [] { lib = load(); });  // a throw leaves the flag unset: tried again later
  return lib;
}

}  // namespace celeriac::storage
