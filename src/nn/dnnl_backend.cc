// oneDNN engine, per-thread streams and the per-thread primitive cache.
#include "nn/dnnl_backend.h"

#include <unordered_map>

namespace celeriac::nn::detail {

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::stream& thread_stream() {
  thread_local dnnl::stream stream(cpu_engine());
  return stream;
}

dnnl::primitive& cached_primitive(const std::string& key,
                                  const std::function<dnnl::primitive()>& make) {
  // Bounded: shapes vary with the prompt length and the number of live beams, so a long-running
  // worker would otherwise keep one entry per length ever seen.
  constexpr size_t kMaxEntries = 512;
  thread_local std::unordered_map<std::string, dnnl::primitive> cache;
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  if (cache.size() >= kMaxEntries) cache.clear();
  return cache.emplace(key, make()).first->second;
}

}  // namespace celeriac::nn::detail
