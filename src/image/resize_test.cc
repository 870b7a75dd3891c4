// PIL-exact resizing: the 768 x 768 bicubic resize of every fixture and other sizes and filters
// against digests of Pillow's Image.resize() output.
#include "image/resize.h"

#include <gtest/gtest.h>

#include "image/decode.h"
#include "image/image_error.h"
#include "image/test_support.h"

namespace celeriac::image {
namespace {

using testing::data_dir;
using testing::goldens;
using testing::sha256_hex;

TEST(Resize, Bicubic768MatchesPilForEveryFixture) {
  size_t checked = 0;
  for (const auto& g : goldens()["images"]) {
    SCOPED_TRACE(g["file"].get<std::string>());
    DecodedImage image = decode_image_file((data_dir() / g["file"].get<std::string>()).string());
    std::vector<uint8_t> out =
        resize_rgb(image.rgb, image.width, image.height, 768, 768, ResampleFilter::kBicubic);
    int wrong = 0;
    for (const auto& s : g["resized_samples"]) {
      const size_t at = (s[0].get<size_t>() * 768 + s[1].get<size_t>()) * 3;
      for (int c = 0; c < 3; ++c) wrong += out[at + c] != s[2 + c].get<int>();
    }
    EXPECT_EQ(wrong, 0) << "sampled channel values differ";
    EXPECT_EQ(sha256_hex(out.data(), out.size()), g["resized_sha256"].get<std::string>());
    ++checked;
  }
  EXPECT_GE(checked, 50u);
}

TEST(Resize, OtherSizesAndFiltersMatchPil) {
  for (const auto& e : goldens()["extra_resizes"]) {
    SCOPED_TRACE(e["file"].get<std::string>() + " " + e["filter"].get<std::string>() + " " +
                 std::to_string(e["width"].get<int>()) + "x" +
                 std::to_string(e["height"].get<int>()));
    DecodedImage image = decode_image_file((data_dir() / e["file"].get<std::string>()).string());
    if (e.contains("crop")) {  // top-left crop, as PIL's Image.crop((0, 0, w, h))
      const int cw = e["crop"][0], ch = e["crop"][1];
      std::vector<uint8_t> crop;
      for (int y = 0; y < ch; ++y) {
        const uint8_t* row = image.rgb.data() + size_t(y) * image.width * 3;
        crop.insert(crop.end(), row, row + size_t(cw) * 3);
      }
      image.rgb = std::move(crop);
      image.width = cw;
      image.height = ch;
    }
    std::vector<uint8_t> out = resize_rgb(image.rgb, image.width, image.height, e["width"],
                                          e["height"], resample_filter_from_pil(e["pil_code"]));
    EXPECT_EQ(sha256_hex(out.data(), out.size()), e["sha256"].get<std::string>());
  }
}

TEST(Resize, PassOrderMattersOnlyForTallReductions) {
  std::vector<uint8_t> src(40 * 90 * 3);
  for (size_t i = 0; i < src.size(); ++i) src[i] = uint8_t((i * 7919) >> 3);
  auto both = [&](int w, int h) {
    return std::make_pair(
        resize_rgb(src, 40, 90, w, h, ResampleFilter::kBicubic),
        resize_rgb(src, 40, 90, w, h, ResampleFilter::kBicubic, PassOrder::kHorizontalFirst));
  };
  auto [wide_new, wide_old] = both(35, 80);  // 10 rows vs 5 columns: exactly 2x, horizontal first
  EXPECT_EQ(wide_new, wide_old);
  auto [tall_new, tall_old] = both(37, 23);  // 67 rows vs 3 columns: vertical first in Pillow 13
  EXPECT_NE(tall_new, tall_old);
}

TEST(Resize, SameSizeCopies) {
  std::vector<uint8_t> src = {1, 2, 3, 4, 5, 6};
  EXPECT_EQ(resize_rgb(src, 2, 1, 2, 1, ResampleFilter::kBicubic), src);
}

TEST(Resize, ConstantImageStaysConstant) {
  // Weights are normalised to sum 1, so a flat image stays flat in every direction and filter.
  std::vector<uint8_t> src(17 * 5 * 3, 200);
  for (int code : {1, 2, 3, 4, 5}) {
    std::vector<uint8_t> out = resize_rgb(src, 17, 5, 40, 3, resample_filter_from_pil(code));
    for (uint8_t v : out) ASSERT_EQ(v, 200) << "filter " << code;
  }
}

TEST(Resize, RejectsNearestAndEmptySizes) {
  EXPECT_THROW(resample_filter_from_pil(0), ImageError);
  EXPECT_THROW(resample_filter_from_pil(6), ImageError);
  std::vector<uint8_t> src(3, 0);
  EXPECT_THROW(resize_rgb(src, 1, 1, 0, 5, ResampleFilter::kBicubic), ImageError);
}

}  // namespace
}  // namespace celeriac::image
