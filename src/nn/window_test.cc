// Window partition / reverse: exact positions (row-major windows, row-major inside), zero padding
// on the right and bottom, round trip, and the fused residual add.
#include "nn/window.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "nn/test_util.h"

namespace celeriac::nn {
namespace {

TEST(Window, PartitionOrderAndPadding) {
  // 1 image, 5 × 7 map, 2 channels, window 3: 2 × 3 windows, padded to 6 × 9.
  const int64_t h = 5, w = 7, c = 2, win = 3;
  Tensor x = testing::random_tensor({1, h, w, c}, 1);
  Tensor windows = Tensor::empty({6, win * win, c});
  window_partition(x, win, windows);
  for (int64_t wy = 0; wy < 2; ++wy)
    for (int64_t wx = 0; wx < 3; ++wx)
      for (int64_t iy = 0; iy < win; ++iy)
        for (int64_t ix = 0; ix < win; ++ix)
          for (int64_t ch = 0; ch < c; ++ch) {
            int64_t y = wy * win + iy, xx = wx * win + ix;
            float want = (y < h && xx < w) ? x.data()[(y * w + xx) * c + ch] : 0.0f;
            ASSERT_EQ(windows.data()[((wy * 3 + wx) * win * win + iy * win + ix) * c + ch], want);
          }
  Tensor back = Tensor::empty({1, h, w, c});
  window_reverse(windows, win, back, false);
  for (int64_t i = 0; i < x.numel(); ++i) ASSERT_EQ(back.data()[i], x.data()[i]);
  window_reverse(windows, win, back, true);  // back = x + x
  for (int64_t i = 0; i < x.numel(); ++i) ASSERT_EQ(back.data()[i], 2 * x.data()[i]);
}

TEST(Window, BatchAndShapeChecks) {
  Tensor x = testing::random_tensor({2, 24, 24, 4}, 2);
  EXPECT_EQ(windows_along(24, 12), 2);
  EXPECT_EQ(windows_along(25, 12), 3);
  Tensor windows = Tensor::empty({8, 144, 4});
  window_partition(x, 12, windows);
  // Window 5 = image 1, window (0, 1): token (0, 12) of image 1.
  EXPECT_EQ(windows.data()[5 * 144 * 4], x.data()[(24 * 24 + 12) * 4]);
  Tensor wrong = Tensor::empty({9, 144, 4});
  EXPECT_THROW(window_partition(x, 12, wrong), ShapeError);
  EXPECT_THROW(window_partition(x, 12, windows.slice0(0, 3), 6), ShapeError);  // 6 + 3 > 8
  EXPECT_THROW(window_partition(x, 12, Tensor::empty({2, 143, 4})), ShapeError);
}

TEST(Window, ChunksOfWindowsEqualTheWholeMap) {
  // 2 images of 25 × 24 (padded to 36 × 24): 12 windows, taken 5 at a time (5 + 5 + 2).
  Tensor x = testing::random_tensor({2, 25, 24, 3}, 3);
  Tensor whole = Tensor::empty({12, 144, 3});
  window_partition(x, 12, whole);
  Tensor chunk = Tensor::empty({5, 144, 3});
  Tensor back = Tensor::zeros(x.shape());
  for (int64_t first = 0; first < 12; first += 5) {
    const Tensor part = chunk.slice0(0, std::min<int64_t>(5, 12 - first));
    window_partition(x, 12, part, first);
    for (int64_t i = 0; i < part.numel(); ++i)
      ASSERT_EQ(part.data()[i], whole.data()[first * 144 * 3 + i]) << first << " " << i;
    window_reverse(part, 12, back, /*accumulate=*/true, first);
  }
  for (int64_t i = 0; i < x.numel(); ++i) ASSERT_EQ(back.data()[i], x.data()[i]);
}

}  // namespace
}  // namespace celeriac::nn
