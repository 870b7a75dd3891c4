// Internal to nn/: the oneDNN engine, one stream per calling thread, and a per-thread cache of
// primitives keyed by everything that defines them (oneDNN's own cache still pays for building a
// primitive descriptor on every call, ~10-50 us, which adds up in a decode step of ~50 GEMMs).
#pragma once

#include <functional>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>

namespace celeriac::nn::detail {

dnnl::engine& cpu_engine();
// A stream for the calling thread (streams are not meant to be shared between threads).
dnnl::stream& thread_stream();

// The primitive stored under `key` for this thread, made by `make` on first use. The caller puts
// every parameter that changes the primitive (kind, shapes, strides, flags) into the key. The
// reference is valid until the next call on this thread.
dnnl::primitive& cached_primitive(const std::string& key,
                                  const std::function<dnnl::primitive()>& make);

}  // namespace celeriac::nn::detail
