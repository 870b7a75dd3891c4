// PIL-exact resampling (see resize.h). The double-precision steps are written in the order
// Pillow evaluates them, and this file is compiled without floating-point contraction, so every
// weight and therefore every fixed-point coefficient is the one Pillow computes.
#include "image/resize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "image/image_error.h"

namespace celeriac::image {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // 22, as Pillow's PRECISION_BITS

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x = x * M_PI;
  return std::sin(x) / x;
}

double filter_value(ResampleFilter f, double x) {
  switch (f) {
    case ResampleFilter::kBox:
      return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0;
    case ResampleFilter::kBilinear:
      if (x < 0.0) x = -x;
      return x < 1.0 ? 1.0 - x : 0.0;
    case ResampleFilter::kHamming:
      if (x < 0.0) x = -x;
      if (x == 0.0) return 1.0;
      if (x >= 1.0) return 0.0;
      x = x * M_PI;
      // Pillow writes these constants as floats (0.54f, 0.46f); their float values matter.
      return std::sin(x) / x * (double(0.54f) + double(0.46f) * std::cos(x));
    case ResampleFilter::kBicubic: {
      constexpr double a = -0.5;  // Pillow's bicubic uses a = -0.5
      if (x < 0.0) x = -x;
      if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
      if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
      return 0.0;
    }
    case ResampleFilter::kLanczos:
      if (-3.0 <= x && x < 3.0) return sinc(x) * sinc(x / 3);
      return 0.0;
  }
  return 0.0;
}

double filter_support(ResampleFilter f) {
  switch (f) {
    case ResampleFilter::kBox:
      return 0.5;
    case ResampleFilter::kBilinear:
      return 1.0;
    case ResampleFilter::kHamming:
      return 1.0;
    case ResampleFilter::kBicubic:
      return 2.0;
    case ResampleFilter::kLanczos:
      return 3.0;
  }
  return 1.0;
}

// Per output index: the first input index, how many inputs, and ksize fixed-point weights.
struct Coefficients {
  int ksize = 0;
  std::vector<int> first;
  std::vector<int> count;
  std::vector<int32_t> weights;  // out_size * ksize
};

Coefficients precompute(int in_size, int out_size, ResampleFilter filter) {
  // Pillow's precompute_coeffs with the box (0, in_size).
  const double in0 = 0.0, in1 = in_size;
  const double scale = (in1 - in0) / out_size;
  double filterscale = scale;
  if (filterscale < 1.0) filterscale = 1.0;
  const double support = filter_support(filter) * filterscale;
  Coefficients c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.weights.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> k(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    double ww = 0.0;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    for (int x = 0; x < xmax; ++x) {
      double w = filter_value(filter, (x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    int32_t* out = &c.weights[static_cast<size_t>(xx) * c.ksize];
    for (int x = 0; x < xmax; ++x) {
      double w = k[x];
      if (ww != 0.0) w /= ww;
      // normalize_coeffs_8bpc: round half away from zero into 22-bit fixed point.
      out[x] = w < 0 ? static_cast<int32_t>(-0.5 + w * (1 << kPrecisionBits))
                     : static_cast<int32_t>(0.5 + w * (1 << kPrecisionBits));
    }
    c.first[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

inline uint8_t clip8(int32_t acc) {
  if (acc >= (1 << kPrecisionBits << 8)) return 255;
  if (acc <= 0) return 0;
  return static_cast<uint8_t>(acc >> kPrecisionBits);
}

// The two passes are compiled twice, for AVX2 and for the x86-64 baseline, and picked at load
// time: integer arithmetic, so both give the same bytes.
#if defined(__x86_64__) && defined(__GNUC__)
#define CELERIAC_RESAMPLE_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CELERIAC_RESAMPLE_CLONES
#endif

// Horizontal pass over `rows` rows of src starting at row `first_row`. Rows go in blocks of
// kBlockRows, transposed into a small buffer so that one output column of the whole block is a
// multiply-add over contiguous bytes (vectorisable); the integer sums are Pillow's, in any order.
constexpr int kBlockRows = 16;
constexpr int kBlockLanes = kBlockRows * 3;

CELERIAC_RESAMPLE_CLONES void resample_horizontal(const uint8_t* src, int src_width, int first_row,
                                                  int rows, uint8_t* dst, int dst_width,
                                                  const Coefficients& c) {
  const size_t src_stride = static_cast<size_t>(src_width) * 3;
  const size_t dst_stride = static_cast<size_t>(dst_width) * 3;
  std::vector<uint8_t> block(static_cast<size_t>(src_width) * kBlockLanes, 0);
  alignas(64) int32_t acc[kBlockLanes];
  for (int y0 = 0; y0 < rows; y0 += kBlockRows) {
    const int n = std::min(kBlockRows, rows - y0);
    // block[x][r][channel] = src[first_row + y0 + r][x][channel]: written in order, read from n
    // row streams.
    const uint8_t* rows_in[kBlockRows];
    for (int r = 0; r < n; ++r) {
      rows_in[r] = src + (static_cast<size_t>(first_row) + y0 + r) * src_stride;
    }
    for (int x = 0; x < src_width; ++x) {
      uint8_t* out = block.data() + static_cast<size_t>(x) * kBlockLanes;
      for (int r = 0; r < n; ++r) {
        const uint8_t* in = rows_in[r] + 3 * static_cast<size_t>(x);
        out[3 * r] = in[0];
        out[3 * r + 1] = in[1];
        out[3 * r + 2] = in[2];
      }
    }
    for (int xx = 0; xx < dst_width; ++xx) {
      const int32_t* k = &c.weights[static_cast<size_t>(xx) * c.ksize];
      const uint8_t* p = block.data() + static_cast<size_t>(c.first[xx]) * kBlockLanes;
      for (int i = 0; i < kBlockLanes; ++i) acc[i] = 1 << (kPrecisionBits - 1);
      for (int x = 0; x < c.count[xx]; ++x) {
        const int32_t w = k[x];
        const uint8_t* px = p + static_cast<size_t>(x) * kBlockLanes;
        for (int i = 0; i < kBlockLanes; ++i) acc[i] += px[i] * w;
      }
      for (int r = 0; r < n; ++r) {
        uint8_t* out =
            dst + (static_cast<size_t>(y0) + r) * dst_stride + 3 * static_cast<size_t>(xx);
        out[0] = clip8(acc[3 * r]);
        out[1] = clip8(acc[3 * r + 1]);
        out[2] = clip8(acc[3 * r + 2]);
      }
    }
  }
}

// Vertical pass; c.first is relative to the first row of src. Accumulates whole rows so the
// inner loop is a plain multiply-add over contiguous bytes.
CELERIAC_RESAMPLE_CLONES void resample_vertical(const uint8_t* src, int width, uint8_t* dst,
                                                int dst_height, const Coefficients& c) {
  const size_t stride = static_cast<size_t>(width) * 3;
  std::vector<int32_t> acc(stride);
  for (int yy = 0; yy < dst_height; ++yy) {
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    const int32_t* k = &c.weights[static_cast<size_t>(yy) * c.ksize];
    for (int y = 0; y < c.count[yy]; ++y) {
      const uint8_t* in = src + (static_cast<size_t>(c.first[yy]) + y) * stride;
      const int32_t w = k[y];
      int32_t* a = acc.data();
      for (size_t i = 0; i < stride; ++i) a[i] += in[i] * w;
    }
    uint8_t* out = dst + static_cast<size_t>(yy) * stride;
    for (size_t i = 0; i < stride; ++i) out[i] = clip8(acc[i]);
  }
}

}  // namespace

ResampleFilter resample_filter_from_pil(int code) {
  switch (code) {
    case 1:
      return ResampleFilter::kLanczos;
    case 2:
      return ResampleFilter::kBilinear;
    case 3:
      return ResampleFilter::kBicubic;
    case 4:
      return ResampleFilter::kBox;
    case 5:
      return ResampleFilter::kHamming;
    default:
      throw ImageError(ImageErrorKind::kInvalidArgument,
                       "unsupported PIL resample filter " + std::to_string(code) +
                           " (supported: 1 LANCZOS, 2 BILINEAR, 3 BICUBIC, 4 BOX, 5 HAMMING)");
  }
}

void resize_rgb(const uint8_t* src, int src_width, int src_height, uint8_t* dst, int dst_width,
                int dst_height, ResampleFilter filter, PassOrder order) {
  if (src_width <= 0 || src_height <= 0 || dst_width <= 0 || dst_height <= 0) {
    throw ImageError(ImageErrorKind::kInvalidArgument, "resize with an empty source or target");
  }
  const bool need_horizontal = dst_width != src_width;
  const bool need_vertical = dst_height != src_height;
  if (!need_horizontal && !need_vertical) {
    std::memcpy(dst, src, static_cast<size_t>(src_width) * src_height * 3);
    return;
  }
  if (!need_vertical) {
    resample_horizontal(src, src_width, 0, src_height, dst, dst_width,
                        precompute(src_width, dst_width, filter));
    return;
  }
  Coefficients vertical = precompute(src_height, dst_height, filter);
  if (!need_horizontal) {
    resample_vertical(src, src_width, dst, dst_height, vertical);
    return;
  }
  // Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many
  // pixels as the width does (python-pillow/Pillow#9549); the uint8 intermediate makes the order
  // visible in the output.
  const bool vertical_first = order == PassOrder::kPillow13 && dst_height < src_height &&
                              (src_height - dst_height) > 2 * (src_width - dst_width);
  Coefficients horizontal = precompute(src_width, dst_width, filter);
  if (vertical_first) {
    std::vector<uint8_t> tmp(static_cast<size_t>(src_width) * dst_height * 3);
    resample_vertical(src, src_width, tmp.data(), dst_height, vertical);
    resample_horizontal(tmp.data(), src_width, 0, dst_height, dst, dst_width, horizontal);
    return;
  }
  // Only the source rows the vertical pass reads go through the horizontal pass.
  const int first_row = vertical.first[0];
  const int last_row = vertical.first[dst_height - 1] + vertical.count[dst_height - 1];
  for (int& f : vertical.first) f -= first_row;
  std::vector<uint8_t> tmp(static_cast<size_t>(dst_width) * (last_row - first_row) * 3);
  resample_horizontal(src, src_width, first_row, last_row - first_row, tmp.data(), dst_width,
                      horizontal);
  resample_vertical(tmp.data(), dst_width, dst, dst_height, vertical);
}

std::vector<uint8_t> resize_rgb(const std::vector<uint8_t>& src, int src_width, int src_height,
                                int dst_width, int dst_height, ResampleFilter filter,
                                PassOrder order) {
  std::vector<uint8_t> dst(static_cast<size_t>(dst_width) * dst_height * 3);
  resize_rgb(src.data(), src_width, src_height, dst.data(), dst_width, dst_height, filter, order);
  return dst;
}

}  // namespace celeriac::image
