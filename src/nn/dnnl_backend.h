// Internal to nn/: the oneDNN engine, one stream per calling thread, and a per-thread cache of
// primitives keyed by everything that defines them (oneDNN's own cache still pays for building a
// primitive descriptor on every call, ~10-50 us, which adds up in a decode step of ~50 GEMMs).
#pragma once

#include <functional>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <unordered_map>

namespace celeriac::nn::detail {

dnnl::engine& cpu_engine();
// A stream for the calling thread (streams are not meant to be shared between threads).
dnnl::stream& thread_stream();

// Every primitive is made with a user-managed scratchpad (scratchpad_attr()): oneDNN's own
// ("library" mode) is a per-thread buffer that only grows, so the vision encoder's largest
// GEMM/convolution workspace would stay resident for the life of the worker. execute() takes the
// scratchpad from nn's activation buffers instead, which are returned to the system when the
// model moves on to other shapes.
dnnl::primitive_attr scratchpad_attr();
// Unmaps the calling thread's scratchpad (release_cached_buffers() calls it).
void release_scratchpad();

struct Primitive {
  dnnl::primitive prim;
  dnnl::memory::desc scratchpad;  // from the primitive descriptor; size 0 if none
  dnnl::memory::desc weights;     // matmuls: the layout their weights are read in
};

// The primitive stored under `key` for this thread, made by `make` on first use (with an attr
// from scratchpad_attr()). The caller puts every parameter that changes the primitive (kind,
// shapes, strides, flags) into the key. The reference is valid until the next call on this thread.
Primitive& cached_primitive(const std::string& key, const std::function<Primitive()>& make);

// Runs `prim` on this thread's stream with a scratchpad if it needs one, and waits.
void execute(const dnnl::primitive& prim, const dnnl::memory::desc& scratchpad,
             std::unordered_map<int, dnnl::memory>& args);

}  // namespace celeriac::nn::detail
