// DaViT's window partition for SpatialBlock attention (spec §4.3): non-overlapping w × w windows,
// row-major window grid, row-major inside a window; the map is zero-padded right and bottom to
// multiples of w (after the LayerNorm, so padded tokens are exact zeros and are not masked).
#pragma once

#include "nn/tensor.h"

namespace celeriac::nn {

// Number of windows along a side of `size` tokens: ceil(size / window).
int64_t windows_along(int64_t size, int64_t window);

// x[B, H, W, C] -> windows[B · nH · nW, window², C].
void window_partition(const Tensor& x, int64_t window, const Tensor& windows);

// Inverse: windows -> y[B, H, W, C], padding dropped. With accumulate, y += the un-partitioned
// values (the residual add of the attention branch, fused here).
void window_reverse(const Tensor& windows, int64_t window, const Tensor& y, bool accumulate);

}  // namespace celeriac::nn
