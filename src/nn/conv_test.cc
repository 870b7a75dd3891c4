// conv2d against a direct scalar convolution (double accumulation), rel 1e-5 norm-wise, on the
// three kinds DaViT uses at small sizes with odd, non-multiple spatial sizes.
#include "nn/conv.h"

#include <gtest/gtest.h>

#include "nn/test_util.h"
#include "nn/threading.h"

namespace celeriac::nn {
namespace {

using testing::random_tensor;

// x given NCHW or NHWC; result NHWC.
std::vector<double> reference_conv(const Tensor& x, bool nchw, const Tensor& w, const Tensor* b,
                                   const Conv2dParams& p) {
  int64_t n = x.dim(0), cin = nchw ? x.dim(1) : x.dim(3), h = nchw ? x.dim(2) : x.dim(1),
          wd = nchw ? x.dim(3) : x.dim(2);
  int64_t cout = w.dim(0), kh = w.dim(2), kw = w.dim(3), g = p.groups;
  int64_t ho = conv2d_output_size(h, kh, p), wo = conv2d_output_size(wd, kw, p);
  int64_t cin_g = cin / g, cout_g = cout / g;
  auto at = [&](int64_t bi, int64_t c, int64_t y, int64_t xx) -> double {
    if (y < 0 || y >= h || xx < 0 || xx >= wd) return 0.0;
    return nchw ? x.data()[((bi * cin + c) * h + y) * wd + xx]
                : x.data()[((bi * h + y) * wd + xx) * cin + c];
  };
  std::vector<double> out(n * ho * wo * cout);
  for (int64_t bi = 0; bi < n; ++bi)
    for (int64_t oy = 0; oy < ho; ++oy)
      for (int64_t ox = 0; ox < wo; ++ox)
        for (int64_t oc = 0; oc < cout; ++oc) {
          int64_t grp = oc / cout_g;
          double s = b ? b->data()[oc] : 0.0;
          for (int64_t ic = 0; ic < cin_g; ++ic)
            for (int64_t ky = 0; ky < kh; ++ky)
              for (int64_t kx = 0; kx < kw; ++kx)
                s += at(bi, grp * cin_g + ic, oy * p.stride - p.padding + ky,
                        ox * p.stride - p.padding + kx) *
                     w.data()[((oc * cin_g + ic) * kh + ky) * kw + kx];
          out[((bi * ho + oy) * wo + ox) * cout + oc] = s;
        }
  return out;
}

struct ConvCase {
  const char* name;
  bool nchw;
  int64_t batch, cin, h, w, cout, k;
  Conv2dParams params;
};

class Conv2dCases : public ::testing::TestWithParam<ConvCase> {};

TEST_P(Conv2dCases, MatchesScalarReference) {
  const ConvCase& c = GetParam();
  Tensor x = c.nchw ? random_tensor({c.batch, c.cin, c.h, c.w}, 1)
                    : random_tensor({c.batch, c.h, c.w, c.cin}, 1);
  Tensor w = random_tensor({c.cout, c.cin / c.params.groups, c.k, c.k}, 2);
  Tensor b = random_tensor({c.cout}, 3);
  int64_t ho = conv2d_output_size(c.h, c.k, c.params), wo = conv2d_output_size(c.w, c.k, c.params);
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    Tensor y = Tensor::empty({c.batch, ho, wo, c.cout});
    conv2d(x, c.nchw ? ImageLayout::kNCHW : ImageLayout::kNHWC, w, &b, c.params, y);
    EXPECT_LT(testing::rel_error(y, reference_conv(x, c.nchw, w, &b, c.params)), 1e-5)
        << c.name << ", " << threads << " threads";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Davit, Conv2dCases,
    ::testing::Values(
        // stage-0 patch embedding on the image (spec §4.1): 7×7, stride 4, pad 3, NCHW input
        ConvCase{"patch0", true, 2, 3, 29, 23, 16, 7, {4, 3, 1}},
        // later patch embeddings: 3×3, stride 2, pad 1 on tokens
        ConvCase{"patch", false, 1, 8, 13, 10, 16, 3, {2, 1, 1}},
        // depthwise position conv: 3×3, stride 1, pad 1, groups = C
        ConvCase{"depthwise", false, 2, 24, 11, 9, 24, 3, {1, 1, 24}},
        ConvCase{"depthwise_wide", false, 1, 128, 12, 12, 128, 3, {1, 1, 128}}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Conv2d, OutputSizeAndErrors) {
  EXPECT_EQ(conv2d_output_size(768, 7, {4, 3, 1}), 192);
  EXPECT_EQ(conv2d_output_size(192, 3, {2, 1, 1}), 96);
  EXPECT_EQ(conv2d_output_size(25, 3, {2, 1, 1}), 13);
  Tensor x = random_tensor({1, 5, 5, 4}, 1), w = random_tensor({4, 1, 3, 3}, 2);
  Tensor wrong = Tensor::empty({1, 4, 4, 4});
  EXPECT_THROW(conv2d(x, ImageLayout::kNHWC, w, nullptr, {1, 1, 4}, wrong), ShapeError);
  Tensor y = Tensor::empty({1, 5, 5, 4});
  EXPECT_THROW(conv2d(x, ImageLayout::kNHWC, w, nullptr, {1, 1, 1}, y), ShapeError);  // groups
  EXPECT_NO_THROW(conv2d(x, ImageLayout::kNHWC, w, nullptr, {1, 1, 4}, y));
}

}  // namespace
}  // namespace celeriac::nn
