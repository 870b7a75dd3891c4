// Window partition / reverse: row copies of C floats, parallel over windows.
#include "nn/window.h"

#include <cstring>

#include "nn/threading.h"
#include "nn/vmath.h"

namespace celeriac::nn {
namespace {

void check(const Tensor& map, int64_t window, const Tensor& windows, int64_t first,
           const char* what) {
  if (map.rank() != 4 || windows.rank() != 3 || window < 1)
    throw ShapeError(std::string(what) + ": map " + map.shape().to_string() + " windows " +
                     windows.shape().to_string());
  const int64_t b = map.dim(0), h = map.dim(1), w = map.dim(2), c = map.dim(3);
  const int64_t total = b * windows_along(h, window) * windows_along(w, window);
  if (first < 0 || first + windows.dim(0) > total)
    throw ShapeError(std::string(what) + ": windows [" + std::to_string(first) + ", " +
                     std::to_string(first + windows.dim(0)) + ") of " + std::to_string(total));
  check_shape(windows, Shape{windows.dim(0), window * window, c}, what);
}

// Calls fn(row, token) for every row of the windows [first, first + count) in their list: row =
// the row in a windows tensor that starts at `first`, token = the map position that row holds
// (flattened [b, y, x]) or -1 for padding. Parallel over windows.
template <typename Fn>
void for_each_window_row(const Tensor& map, int64_t window, int64_t first, int64_t count, Fn fn) {
  const int64_t h = map.dim(1), w = map.dim(2);
  const int64_t nh = windows_along(h, window), nw = windows_along(w, window);
  parallel_for(count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t win = begin; win < end; ++win) {
      const int64_t g = first + win;  // index in the whole map's window list
      const int64_t b = g / (nh * nw), wy = g / nw % nh, wx = g % nw;
      for (int64_t iy = 0; iy < window; ++iy)
        for (int64_t ix = 0; ix < window; ++ix) {
          const int64_t y = wy * window + iy, x = wx * window + ix;
          const int64_t row = (win * window + iy) * window + ix;
          fn(row, y < h && x < w ? (b * h + y) * w + x : int64_t{-1});
        }
    }
  });
}

}  // namespace

int64_t windows_along(int64_t size, int64_t window) { return (size + window - 1) / window; }

void window_partition(const Tensor& x, int64_t window, const Tensor& windows, int64_t first) {
  check(x, window, windows, first, "window_partition");
  const int64_t c = x.dim(3);
  const float* src = x.data();
  float* dst = windows.mutable_data();
  for_each_window_row(x, window, first, windows.dim(0), [&](int64_t row, int64_t token) {
    if (token >= 0)
      std::memcpy(dst + row * c, src + token * c, c * sizeof(float));
    else
      std::memset(dst + row * c, 0, c * sizeof(float));
  });
}

void window_reverse(const Tensor& windows, int64_t window, const Tensor& y, bool accumulate,
                    int64_t first) {
  check(y, window, windows, first, "window_reverse");
  const int64_t c = y.dim(3);
  const float* src = windows.data();
  float* dst = y.mutable_data();
  for_each_window_row(y, window, first, windows.dim(0), [&](int64_t row, int64_t token) {
    if (token < 0) return;  // padding is dropped
    if (accumulate)
      vmath::add(dst + token * c, src + row * c, dst + token * c, c);
    else
      std::memcpy(dst + token * c, src + row * c, c * sizeof(float));
  });
}

}  // namespace celeriac::nn
