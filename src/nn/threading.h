// Intra-op parallelism of nn/: how many threads one op may use, and a parallel_for over them.
//
// Decision (docs/decisions/compute-library.md): no thread pool of our own. Debian's oneDNN is
// built with the OpenMP runtime, so its GEMMs and convolutions already run on OpenMP's team; our
// element-wise loops, softmax and per-head attention use the same team through parallel_for, so
// the two never oversubscribe the cores. The number is process-wide and set once (CLI/env), and is
// applied to whichever thread calls an op: a worker's executor threads may each run the model.
#pragma once

#include <cstdint>
#include <functional>

namespace celeriac::nn {

// Threads per op. Default: OMP_NUM_THREADS if set, else the number of online cores. n < 1 is 1.
void set_num_threads(int n);
int num_threads();

// Calls fn(begin, end) on disjoint chunks that cover [0, n), in parallel on up to num_threads()
// threads; chunks hold at least `grain` items so tiny loops stay on the calling thread. Nested
// calls (from inside fn) run serially. fn must not throw.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// The same for memory-bound loops: each thread walks its own contiguous share in order (one
// sequential stream, which the hardware prefetchers follow), and a thread done with its share
// takes items one at a time from the end of another's, so threads that run at different speeds
// (a shared machine's neighbours) still finish together. fn gets one item per call. On Zen 4 a
// decode step's packed products took 1.12-1.13x a plain read so, 1.23-1.26x with items handed
// out in turn (the threads' streams then jump at every item); bench/florence/decode_kernels.cc.
void parallel_for_stealing(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

namespace detail {
// Makes the calling thread's OpenMP team size equal num_threads() before a oneDNN call (OpenMP's
// setting is per thread); cheap when nothing changed.
void apply_num_threads();
}  // namespace detail

}  // namespace celeriac::nn
