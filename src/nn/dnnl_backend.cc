// oneDNN engine, per-thread streams and the per-thread primitive cache.
#include "nn/dnnl_backend.h"

#include <unordered_map>

#include <sys/mman.h>

#include <new>

namespace celeriac::nn::detail {

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::stream& thread_stream() {
  thread_local dnnl::stream stream(cpu_engine());
  return stream;
}

namespace {

// The calling thread's scratchpad: mapped, grown to the largest request, unmapped on release.
class ScratchBuffer {
 public:
  ~ScratchBuffer() { release(); }
  void* reserve(size_t bytes) {
    if (bytes > bytes_) {
      release();
      void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      data_ = p;
      bytes_ = bytes;
    }
    return data_;
  }
  void release() {
    if (data_) munmap(data_, bytes_);
    data_ = nullptr;
    bytes_ = 0;
  }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

ScratchBuffer& thread_scratch() {
  thread_local ScratchBuffer buffer;
  return buffer;
}

}  // namespace

void release_scratchpad() { thread_scratch().release(); }

dnnl::primitive_attr scratchpad_attr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

void execute(const dnnl::primitive& prim, const dnnl::memory::desc& scratchpad,
             std::unordered_map<int, dnnl::memory>& args) {
  const size_t bytes = scratchpad.get_size();
  if (bytes > 0) {
    ScratchBuffer& buffer = thread_scratch();
    args.insert_or_assign(DNNL_ARG_SCRATCHPAD,
                          dnnl::memory(scratchpad, cpu_engine(), buffer.reserve(bytes)));
  }
  prim.execute(thread_stream(), args);
  thread_stream().wait();
}

Primitive& cached_primitive(const std::string& key, const std::function<Primitive()>& make) {
  // Bounded: shapes vary with the prompt length and the number of live beams, so a long-running
  // worker would otherwise keep one entry per length ever seen.
  constexpr size_t kMaxEntries = 512;
  thread_local std::unordered_map<std::string, Primitive> cache;
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  if (cache.size() >= kMaxEntries) cache.clear();
  return cache.emplace(key, make()).first->second;
}

}  // namespace celeriac::nn::detail
