// DaViT's window partition for SpatialBlock attention (spec §4.3): non-overlapping w × w windows,
// row-major window grid, row-major inside a window; the map is zero-padded right and bottom to
// multiples of w (after the LayerNorm, so padded tokens are exact zeros and are not masked).
#pragma once

#include "nn/tensor.h"

namespace celeriac::nn {

// Number of windows along a side of `size` tokens: ceil(size / window).
int64_t windows_along(int64_t size, int64_t window);

// x[B, H, W, C] -> windows[B · nH · nW, window², C], or the windows [first, first + n) of that
// list into windows[n, window², C] (a model can then work through a map a chunk at a time).
void window_partition(const Tensor& x, int64_t window, const Tensor& windows,
                      int64_t first = 0);

// Inverse: windows -> y[B, H, W, C], padding dropped. With accumulate, y += the un-partitioned
// values (the residual add of the attention branch, fused here). `first` as above.
void window_reverse(const Tensor& windows, int64_t window, const Tensor& y, bool accumulate,
                    int64_t first = 0);

}  // namespace celeriac::nn
