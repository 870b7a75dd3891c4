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

}  // namespace

int64_t windows_along(int64_t size, int64_t window) { return (size + window - 1) / window; }

void window_partition(const Tensor& x, int64_t window, const Tensor& windows, int64_t first) {
  check(x, window, windows, first, "window_partition");
  const int64_t h = x.dim(1), w = x.dim(2), c = x.dim(3);
  const int64_t nh = windows_along(h, window), nw = windows_along(w, window);
  const float* src = x.data();
  float* dst = windows.mutable_data();
  parallel_for(windows.dim(0), 1, [&](int64_t begin, int64_t end) {
    for (int64_t win = begin; win < end; ++win) {
      const int64_t g = first + win;  // index in the whole map's window list
      const int64_t b = g / (nh * nw), wy = g / nw % nh, wx = g % nw;
      for (int64_t iy = 0; iy < window; ++iy)
        for (int64_t ix = 0; ix < window; ++ix) {
          const int64_t y = wy * window + iy, xx = wx * window + ix;
          float* row = dst + (win * window * window + iy * window + ix) * c;
          if (y < h && xx < w)
            std::memcpy(row, src + ((b * h + y) * w + xx) * c, c * sizeof(float));
          else
            std::memset(row, 0, c * sizeof(float));
        }
    }
  });
}

void window_reverse(const Tensor& windows, int64_t window, const Tensor& y, bool accumulate,
                    int64_t first) {
  check(y, window, windows, first, "window_reverse");
  const int64_t h = y.dim(1), w = y.dim(2), c = y.dim(3);
  const int64_t nh = windows_along(h, window), nw = windows_along(w, window);
  const float* src = windows.data();
  float* dst = y.mutable_data();
  parallel_for(windows.dim(0), 1, [&](int64_t begin, int64_t end) {
    for (int64_t win = begin; win < end; ++win) {
      const int64_t g = first + win;
      const int64_t b = g / (nh * nw), wy = g / nw % nh, wx = g % nw;
      for (int64_t iy = 0; iy < window; ++iy)
        for (int64_t ix = 0; ix < window; ++ix) {
          const int64_t yy = wy * window + iy, xx = wx * window + ix;
          if (yy >= h || xx >= w) continue;
          const float* row = src + (win * window * window + iy * window + ix) * c;
          float* out = dst + ((b * h + yy) * w + xx) * c;
          if (accumulate)
            vmath::add(out, row, out, c);
          else
            std::memcpy(out, row, c * sizeof(float));
        }
    }
  });
}

}  // namespace celeriac::nn
